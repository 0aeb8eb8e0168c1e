"""The sampling loop: owns the model call, caching, constraints and semi-autoregressive extension.

Works on a bare backbone (no Lightning): `sample(seqdiff.load(path).backbone, mask_id=..., ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqdiff.diffusion.objective import subs_log_probs
from seqdiff.sampling.constraints import Constraints


@dataclass
class SampleOutput:
    tokens: Tensor  # (B, L) long, no mask tokens
    nfe: int  # number of network calls
    steps: int  # sampler steps taken


def _window(backbone: nn.Module) -> int | None:
    return getattr(backbone, "max_len", None)


@torch.no_grad()
def denoise(
    backbone: nn.Module,
    sampler,
    x: Tensor,
    mask_id: int,
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    cache: bool = True,
    progress: bool = False,
) -> SampleOutput:
    """Run the reverse process from x (B, L) (mask tokens = to generate) to a fully unmasked sequence.

    Cache: when the backbone ignores t and no token changed since the last call, p(x0 | xt) is unchanged,
    so the previous log-probs are reused (MDLM's cached sampler). Samplers with a `final_fill` flag may
    also stop early once nothing is masked.
    """
    time_cond = getattr(backbone, "time_conditioning", True)
    ts = sampler.timesteps(device=x.device).tolist()
    nfe, log_p, last_x = 0, None, None
    steps = 0
    it = range(len(ts) - 1)
    for i in tqdm(it, desc="sampling", disable=not progress, leave=False):
        if not (x == mask_id).any():
            break
        t, s = ts[i], ts[i + 1]
        if not (cache and not time_cond and log_p is not None and torch.equal(x, last_x)):
            tt = torch.full((x.shape[0],), t, device=x.device)
            log_p = subs_log_probs(backbone(x, tt), x, mask_id)
            if constraints is not None:
                log_p = constraints.restrict(log_p)
            nfe, last_x = nfe + 1, x
        x = sampler.step(log_p, x, t, s, mask_id, generator)
        steps += 1
    return SampleOutput(tokens=x, nfe=nfe, steps=steps)


def _denoise(backbone: nn.Module, sampler, x: Tensor, mask_id: int, constraints: Constraints | None,
             generator: torch.Generator | None, cache: bool, progress: bool) -> SampleOutput:
    """Samplers of other noise processes own their reverse loop (`sampler.denoise`, seqdiff.sampling.families);
    MDLM samplers run in `denoise` above."""
    own = getattr(sampler, "denoise", None)
    if own is not None:
        return own(backbone, x, mask_id, constraints, generator, cache, progress)
    return denoise(backbone, sampler, x, mask_id, constraints, generator, cache, progress)


@torch.no_grad()
def sample(
    backbone: nn.Module,
    mask_id: int,
    num_samples: int,
    length: int,
    sampler,
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    cache: bool = True,
    stride: int | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> SampleOutput:
    """Generate `num_samples` sequences of `length` tokens.

    If length exceeds the backbone's window (max_len), generation is semi-autoregressive: the first
    window is denoised from scratch, then each next block of `stride` tokens (default half a window) is
    denoised with the previous window - stride tokens kept fixed as context.
    """
    device = device or next(backbone.parameters()).device
    if constraints is None:
        constraints = Constraints.free(length)
    if constraints.length != length:
        raise ValueError(f"constraints cover {constraints.length} positions but length={length}")
    constraints = constraints.to(device)
    window = _window(backbone) or length
    if length <= window:
        x = constraints.initial(num_samples, mask_id)
        return _denoise(backbone, sampler, x, mask_id, constraints, generator, cache, progress)

    stride = stride or window // 2
    if not 0 < stride <= window:
        raise ValueError(f"semi-autoregressive stride must be in (0, window={window}], got {stride}")
    out = _denoise(backbone, sampler, constraints.slice(0, window).initial(num_samples, mask_id), mask_id,
                   constraints.slice(0, window), generator, cache, progress)
    x, nfe, steps = out.tokens, out.nfe, out.steps
    blocks = range(window, length, stride)
    for start in tqdm(blocks, desc="semi-AR blocks", disable=not progress, leave=False):
        stop = min(start + stride, length)
        ctx_start = stop - window
        block_c = constraints.slice(ctx_start, stop)
        context = x[:, ctx_start:start]  # (B, window - new) tokens already generated: fixed for this block
        fixed = block_c.fixed.unsqueeze(0).expand(num_samples, -1).clone()
        fixed[:, : start - ctx_start] = context
        xb = torch.where(fixed >= 0, fixed, torch.full_like(fixed, mask_id))
        ob = _denoise(backbone, sampler, xb, mask_id, block_c, generator, cache, progress)
        x = torch.cat([x, ob.tokens[:, start - ctx_start :]], dim=1)
        nfe, steps = nfe + ob.nfe, steps + ob.steps
    return SampleOutput(tokens=x, nfe=nfe, steps=steps)

"""Held-out likelihood in bits per base: MDLM NELBO (an upper bound) or exact AR NLL.

`evaluate_likelihood` averages over a dataset's windows (with a standard error); `nelbo_bits_per_base` scores
each sequence of a batch, windowing sequences longer than the model. Both draw t through `nelbo_draws`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqdiff.diffusion.objective import LN2, ar_nll, mdlm_nelbo
from seqdiff.noise import Schedule, sample_t


@dataclass
class LikelihoodResult:
    bits_per_base: float  # NELBO (MDLM, an upper bound) or NLL (AR), per base
    stderr: float  # standard error of bits_per_base over windows (and timestep draws)
    bits_per_token: float
    tokens: int
    windows: int
    timestep_samples: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_likelihood(
    backbone: nn.Module,
    tokenizer,
    batches: Iterable[Tensor],
    objective: str = "mdlm",
    schedule: Schedule | None = None,
    timestep_samples: int = 8,
    seed: int = 0,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> LikelihoodResult:
    """Average bits/base over windows x0 (each batch LongTensor[B, L]).

    For MDLM every window is scored with `timestep_samples` antithetic draws of t, so the reported
    standard error covers both window-to-window and Monte Carlo variance.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    per_window: list[Tensor] = []  # nats per token per window
    tokens = 0
    for x0 in tqdm(batches, desc="likelihood", disable=not progress, leave=False):
        x0 = x0.to(device)
        mask = x0 != tokenizer.pad_id
        if objective == "ar":
            nats = ar_nll(backbone, x0, tokenizer.bos_id, mask)
        else:
            if schedule is None:
                raise ValueError("an MDLM likelihood needs the model's noise schedule")
            nats = torch.zeros(x0.shape, device=device)
            for draw in nelbo_draws(backbone, x0, schedule, tokenizer.mask_id, mask, timestep_samples, g, shuffle=True):
                nats += draw
            nats /= timestep_samples
        n = mask.sum(-1).clamp_min(1)
        per_window.append((nats.sum(-1) / n).cpu())
        tokens += int(mask.sum())
    if not per_window:
        raise ValueError("no windows to evaluate (empty split or every window was mostly N)")
    w = torch.cat(per_window).double()
    bpt = float(w.mean()) / LN2
    se = float(w.std(unbiased=True) / math.sqrt(len(w))) / LN2 if len(w) > 1 else float("nan")
    bpb = bpt / getattr(tokenizer, "bases_per_token", 1)
    return LikelihoodResult(bpb, se / getattr(tokenizer, "bases_per_token", 1), bpt, tokens, len(w),
                            timestep_samples if objective != "ar" else 0)


def nelbo_draws(backbone: nn.Module, x0: Tensor, schedule: Schedule, mask_id: int, loss_mask: Tensor,
                timestep_samples: int, generator: torch.Generator | None = None, shuffle: bool = False,
                noise_generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Per-token NELBO nats (B, L) of x0 (B, L) for each of `timestep_samples` antithetic draws of t (drawn
    with `generator`, in a random order across the batch if `shuffle`); the masks come from `noise_generator`."""
    B = x0.shape[0]
    t_all = sample_t(B * timestep_samples, generator=generator, antithetic=True, eps=schedule.eps).to(x0.device)
    if shuffle:
        t_all = t_all[torch.randperm(len(t_all), generator=generator)]
    for t in t_all.view(timestep_samples, B):
        yield mdlm_nelbo(backbone, x0, schedule, t, mask_id, loss_mask, generator=noise_generator)


@torch.no_grad()
def nelbo_bits_per_base(backbone: nn.Module, tokens: Tensor, schedule: Schedule, mask_id: int, pad_id: int,
                        bases_per_token: int = 1, timestep_samples: int = 16,
                        generator: torch.Generator | None = None) -> Tensor:
    """(B,) MDLM NELBO bits/base of each sequence (B, L), scored window by window (the model's max_len),
    `timestep_samples` antithetic draws of t per window; a short last window is padded and the pad ignored."""
    B, L = tokens.shape
    W = int(getattr(backbone, "max_len", L))
    nats, counted = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
    for a in range(0, L, W):
        x0 = tokens[:, a : a + W]
        if x0.shape[1] < W:
            x0 = torch.cat([x0, torch.full((B, W - x0.shape[1]), pad_id, dtype=x0.dtype)], dim=1)
        keep = x0 != pad_id
        for draw in nelbo_draws(backbone, x0, schedule, mask_id, keep, timestep_samples, generator,
                                noise_generator=generator):
            nats += draw.sum(-1).double()
        counted += keep.sum(-1).double() * timestep_samples
    return (nats / counted / LN2 / bases_per_token).float()

"""Reverse-process sampling for any diffusion family (seqdiff.diffusion.families), with optional guidance.

`FamilySampler(family, num_steps, guide)` owns its loop (`denoise`); `seqdiff.sampling.sample` calls it, so
semi-autoregressive generation and `Constraints` work exactly as for the MDLM samplers. Each step from t to s:

1. network call(s): logits -> the family's output (clean-token distribution or log scores), restricted to the
   allowed alphabets (a clean-token prediction is conditioned on them, disallowed scores are zeroed);
2. the family's transition log q(z_s | z_t) per position (ancestral posterior or Tweedie tau-leaping);
3. guidance, if any, reweights those transitions (seqdiff.sampling.guidance);
4. the transition is restricted to allowed tokens again (the absorbing mask stays allowed), renormalised and
   sampled; every given position is then written back.

How fixed positions are kept. Input `x` holds the mask at positions to generate; every other token is given
(Constraints.fixed, infilling context, a semi-AR block's context). Absorbing noise never changes an unmasked
token, so given tokens stay by construction. Under uniform noise every token may change at every step (a
token can be redrawn many times), so given positions are kept by projection, as SEDD's infilling does: they
hold their given token before every network call and the sampler's draw for them is discarded; the network
therefore always sees them clean. Positions to generate start from the uniform prior restricted to their
allowed alphabet, and every later draw is restricted too, so an allowed-alphabet constraint holds at every
step, not only at the end.

Caching: a backbone without time conditioning gives the same logits for the same x, so unchanged x reuses
them (MDLM's cached sampler; only absorbing noise leaves x unchanged in practice). `nfe` counts denoiser
calls; a classifier guide counts its own calls (`guide.calls`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqdiff.diffusion.families import Family, call_backbone
from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.loop import SampleOutput
from seqdiff.sampling.samplers import sample_categorical


@dataclass
class StepContext:
    """What a guide sees at one step: the state, the times, and the (memoised) transition for a label."""

    x: Tensor  # (B, L) current tokens
    t: float
    s: float
    tt: Tensor  # (B,) t as the network's time input
    family: Family
    given: Tensor  # (B, L) bool: positions that never change (written back after every step)
    transition: Callable[[int | None], Tensor]  # label (None = unconditional) -> (B, L, V) log q(z_s | z_t)


class FamilySampler:
    """Reverse process of `family` on a uniform grid of `num_steps` steps from t = 1 to 0, optionally guided."""

    def __init__(self, family: Family, num_steps: int = 128, guide: Callable[[StepContext], Tensor] | None = None,
                 label: int | None = None) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.family, self.num_steps, self.guide, self.label = family, num_steps, guide, label

    def timesteps(self, device: torch.device | str | None = None) -> Tensor:
        return torch.linspace(1.0, 0.0, self.num_steps + 1, device=device)

    def _allowed(self, constraints: Constraints | None, V: int, device) -> Tensor | None:
        """(L, V) tokens a transition may reach: the constraints' alphabets, plus the mask for absorbing noise."""
        if constraints is None or constraints.allowed is None:
            return None
        allowed = constraints.allowed[:, :V].to(device).clone()
        if self.family.process.absorbing:
            allowed[:, self.family.mask_id] = True
        return allowed

    @torch.no_grad()
    def denoise(self, backbone: nn.Module, x: Tensor, mask_id: int, constraints: Constraints | None = None,
                generator: torch.Generator | None = None, cache: bool = True, progress: bool = False) -> SampleOutput:
        """x (B, L): mask = to generate, other tokens given (kept). Returns clean tokens (no mask)."""
        fam, proc = self.family, self.family.process
        if mask_id != fam.mask_id:
            raise ValueError(f"mask_id {mask_id} differs from the family's {fam.mask_id}")
        given = x != mask_id
        x = proc.start(x, None if constraints is None else constraints.allowed, generator)
        time_cond = getattr(backbone, "time_conditioning", True)
        V = proc.vocab_size
        allowed_out = None if constraints is None or constraints.allowed is None else constraints.allowed.to(x.device)
        allowed_q = self._allowed(constraints, V, x.device)
        memo: dict = {}  # label -> logits for the current x (kept across steps only when caching is valid)
        nfe = steps = 0
        ts = self.timesteps(device=x.device).tolist()
        for i in tqdm(range(len(ts) - 1), desc="sampling", disable=not progress, leave=False):
            if proc.done(x):
                break
            t, s = ts[i], ts[i + 1]
            tt = torch.full((x.shape[0],), t, device=x.device)
            if not (cache and not time_cond):
                memo.clear()
            step_q: dict = {}

            def transition(label: int | None, x=x, t=t, s=s, tt=tt, step_q=step_q) -> Tensor:
                nonlocal nfe
                if label not in step_q:
                    if label not in memo:
                        y = None if label is None else torch.full((x.shape[0],), label, device=x.device)
                        memo[label] = call_backbone(backbone, x, tt, y)
                        nfe += 1
                    out = fam.parameterization.restrict(fam.output(memo[label], x, tt), allowed_out, x)
                    step_q[label] = fam.transition(out, x, t, s)
                return step_q[label]

            if self.guide is None:
                log_q = transition(self.label)
            else:
                log_q = self.guide(StepContext(x, t, s, tt, fam, given, transition))
            new = sample_categorical(_restrict(log_q, allowed_q, x), generator)
            new = torch.where(given, x, new)
            if not torch.equal(new, x):
                memo.clear()
            x, steps = new, steps + 1
        return SampleOutput(tokens=x, nfe=nfe, steps=steps)


def _restrict(log_q: Tensor, allowed: Tensor | None, x: Tensor) -> Tensor:
    """Mask disallowed transitions and renormalise; a row left with no finite entry keeps its current token."""
    if allowed is not None:
        log_q = log_q.masked_fill(~allowed[:, : log_q.shape[-1]], -torch.inf)
    dead = ~torch.isfinite(log_q).any(-1, keepdim=True)
    if dead.any():
        stay = torch.full_like(log_q, -torch.inf).scatter_(-1, x.unsqueeze(-1), 0.0)
        log_q = torch.where(dead, stay, log_q)
    return log_q.log_softmax(-1)

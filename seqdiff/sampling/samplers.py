"""Sampler steps for masked diffusion. Samplers never call the model: `seqdiff.sampling.loop.sample` does.

Each step maps (log p(x0 | xt) (B, L, V), xt (B, L), t, s) -> x_s with s < t, following the reverse
process of absorbing-state diffusion: a masked token stays masked with probability
(1 - alpha_s) / (1 - alpha_t) and is otherwise drawn from p(x0 | xt). Unmasked tokens never change.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqdiff.device import rand
from seqdiff.noise import LogLinearSchedule, Schedule


def sample_categorical(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per position from (..., V) log-probs. float64 inverse-CDF avoids the low-probability
    bias that float32 Gumbel noise has (noted by the MDLM authors)."""
    probs = log_probs.double().softmax(-1)
    cdf = probs.cumsum(-1)
    u = rand(cdf.shape[:-1] + (1,), generator, cdf.device, torch.float64)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_max(probs.shape[-1] - 1)
    return idx.squeeze(-1)


def uniform_timesteps(num_steps: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> Tensor:
    """(num_steps + 1,) times on a uniform grid from t=1 down to t=0: the grid every step sampler walks."""
    return torch.linspace(1.0, 0.0, num_steps + 1, device=device, dtype=dtype)


class GridSampler:
    """Base of the samplers that step along `uniform_timesteps(num_steps)`; subclasses define `step`."""

    def __init__(self, num_steps: int) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = num_steps

    def timesteps(self, device: torch.device | str | None = None) -> Tensor:
        """(num_steps + 1,) times from 1 down to 0."""
        return uniform_timesteps(self.num_steps, device)


class AncestralSampler(GridSampler):
    """MDLM ancestral sampler on a uniform grid of `num_steps` steps from t=1 to t=0.

    With cache=True in the loop (and a backbone without time conditioning) this is MDLM's cached sampler:
    steps that unmask nothing reuse the previous logits instead of calling the network.
    """

    def __init__(self, schedule: Schedule | None = None, num_steps: int = 128) -> None:
        super().__init__(num_steps)
        self.schedule = schedule or LogLinearSchedule()

    def step(self, log_p_x0: Tensor, xt: Tensor, t: float, s: float, mask_id: int,
             generator: torch.Generator | None = None) -> Tensor:
        masked = xt == mask_id
        if s <= 0.0:  # last step: every remaining mask is resolved
            unmask = masked
        else:
            a_t = self.schedule.alpha(torch.tensor(t, dtype=torch.float64))
            a_s = self.schedule.alpha(torch.tensor(s, dtype=torch.float64))
            p_unmask = float(((a_s - a_t) / (1.0 - a_t)).clamp(0.0, 1.0))
            u = rand(xt.shape, generator, xt.device)
            unmask = masked & (u < p_unmask)
        if not unmask.any():
            return xt
        x0 = sample_categorical(log_p_x0, generator)
        return torch.where(unmask, x0, xt)

"""Forward process q(xt | x0) of absorbing-state diffusion and timestep sampling."""

from __future__ import annotations

import torch
from torch import Tensor

from seqdiff.device import rand


def add_noise(
    x0: Tensor,
    alpha_t: Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    maskable: Tensor | None = None,
) -> Tensor:
    """Mask each token of x0 (B, L) independently with probability 1 - alpha_t.

    alpha_t: (B,) or (B, 1). maskable: optional bool (B, L); False positions (padding) are never masked.
    """
    alpha_t = alpha_t.reshape(-1, 1).to(torch.float32)
    u = rand(x0.shape, generator, x0.device)  # drawn on the generator's device (CPU or CUDA)
    masked = u >= alpha_t  # P(masked) = 1 - alpha_t
    if maskable is not None:
        masked &= maskable
    return torch.where(masked, torch.full_like(x0, mask_id), x0)


def sample_t(
    batch_size: int,
    generator: torch.Generator | None = None,
    antithetic: bool = True,
    eps: float = 1e-3,
    device: torch.device | str | None = None,
) -> Tensor:
    """Timesteps t in [eps, 1] (B,). Antithetic (stratified) sampling spreads one uniform draw evenly over
    the batch, which lowers the variance of the NELBO estimate (MDLM's low-discrepancy sampler)."""
    u = rand((1 if antithetic else batch_size,), generator, device)  # on `device`, else the generator's
    if antithetic:
        u = (u + torch.arange(batch_size, device=u.device) / batch_size) % 1.0
    return eps + (1.0 - eps) * u

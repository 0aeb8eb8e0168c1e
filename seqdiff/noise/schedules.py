"""Noise schedules alpha(t) for absorbing-state (masked) diffusion.

alpha(t) is the probability that a token is still *unmasked* at time t in [0, 1]; alpha(0) ~= 1 and
alpha(1) ~= 0. The continuous-time NELBO weights each masked token's cross-entropy by
-alpha'(t) / (1 - alpha(t)) (MDLM, Sahoo et al. 2024, eq. 10).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Schedule:
    """Base class: subclasses implement `alpha` and `dalpha` as elementwise functions of t."""

    eps: float

    def alpha(self, t: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def dalpha(self, t: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def loss_weight(self, t: Tensor) -> Tensor:
        """-alpha'(t) / (1 - alpha(t)): the NELBO weight of a masked token's -log p(x0 | xt)."""
        return -self.dalpha(t) / (1.0 - self.alpha(t)).clamp_min(1e-12)

    def config(self) -> dict:
        return {"_target_": f"{type(self).__module__}.{type(self).__name__}", "eps": self.eps}


class LogLinearSchedule(Schedule):
    """alpha(t) = 1 - (1 - eps) t: total noise sigma(t) = -log(alpha(t)) is log-linear in t (MDLM default).

    The loss weight is (1 - eps) / (eps + (1 - eps) t) ~= 1/t.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"noise eps must be in [0, 1), got {eps}")
        self.eps = eps

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def dalpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1.0 - self.eps))


class LinearSchedule(Schedule):
    """Total noise sigma(t) linear in t: alpha(t) = exp(-(sigma_min + t (sigma_max - sigma_min))).

    alpha(1) = exp(-sigma_max) is not exactly 0, so a few tokens may remain unmasked at t = 1; samplers start
    from an all-mask sequence regardless.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0) -> None:
        if not 0.0 <= sigma_min < sigma_max:
            raise ValueError(f"need 0 <= sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.eps = sigma_min

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-(self.sigma_min + t * (self.sigma_max - self.sigma_min)))

    def dalpha(self, t: Tensor) -> Tensor:
        return -(self.sigma_max - self.sigma_min) * self.alpha(t)

    def config(self) -> dict:
        return {"_target_": f"{__name__}.LinearSchedule", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class CosineSchedule(Schedule):
    """alpha(t) = eps + (1 - eps) cos(pi t / 2): slower masking early, faster late (MDLM's CosineNoise).

    alpha(0) = 1, so the NELBO keeps its reconstruction term (an earlier (1 - eps) cos form started at
    1 - eps and under-reported the NELBO by about eps x CE); alpha(1) = eps, so like LinearSchedule a few
    tokens may stay unmasked at t = 1 (samplers start from all-mask regardless).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"noise eps must be in [0, 1), got {eps}")
        self.eps = eps

    def alpha(self, t: Tensor) -> Tensor:
        return self.eps + (1.0 - self.eps) * torch.cos(0.5 * math.pi * t)

    def dalpha(self, t: Tensor) -> Tensor:
        return -(1.0 - self.eps) * 0.5 * math.pi * torch.sin(0.5 * math.pi * t)

"""Generation runners for the benchmark: one function per sampler family, same signature, picked by config.

Each runner is `fn(models, batch, length, steps, generator, dtype) -> SampleOutput` where `models` holds the
MDLM backbone (`mdlm`), the AR backbone (`ar`), `mask_id`, `bos_id` and `schedule`. Configs name them with
`_target_` + `_partial_: true`, so adding a sampler to the table is a YAML edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqdiff.noise import Schedule
from seqdiff.sampling import AncestralSampler, SampleOutput, sample
from seqdiff.sampling.autoregressive import _autocast, sample_autoregressive
from seqdiff.sampling.fast import first_hitting_sample


@dataclass
class Models:
    mdlm: nn.Module
    ar: nn.Module
    mask_id: int
    bos_id: int
    schedule: Schedule


class _Autocast(nn.Module):
    """Runs a backbone under bf16 autocast (for the loop-driven samplers, which call the backbone directly)."""

    def __init__(self, backbone: nn.Module, dtype: torch.dtype | None, max_len: int | None = None) -> None:
        super().__init__()
        self.backbone, self.dtype = backbone, dtype
        self.time_conditioning = getattr(backbone, "time_conditioning", True)
        self.causal = getattr(backbone, "causal", False)
        self.max_len = max_len or getattr(backbone, "max_len", None)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        with _autocast(self.dtype, x.device):
            return self.backbone(x, t)


def ancestral(models: Models, batch: int, length: int, steps: int, generator: torch.Generator,
              dtype: torch.dtype | None = None, cache: bool = False) -> SampleOutput:
    """MDLM ancestral sampler on a `steps` grid through `seqdiff.sampling.sample` (cache=True: MDLM cached)."""
    return sample(_Autocast(models.mdlm, dtype), models.mask_id, batch, length,
                  AncestralSampler(models.schedule, steps), generator=generator, cache=cache)


def cached(models: Models, batch: int, length: int, steps: int, generator: torch.Generator,
           dtype: torch.dtype | None = None) -> SampleOutput:
    return ancestral(models, batch, length, steps, generator, dtype, cache=True)


def semi_ar(models: Models, batch: int, length: int, steps: int, generator: torch.Generator,
            dtype: torch.dtype | None = None, window: int = 512, stride: int | None = None) -> SampleOutput:
    """Semi-autoregressive: blocks of `stride` new tokens denoised (cached, `steps` each) in a `window`
    that keeps window - stride generated tokens as context."""
    return sample(_Autocast(models.mdlm, dtype, max_len=window), models.mask_id, batch, length,
                  AncestralSampler(models.schedule, steps), generator=generator, cache=True, stride=stride)


def remasking(models: Models, batch: int, length: int, steps: int, generator: torch.Generator,
              dtype: torch.dtype | None = None, **kwargs: Any) -> SampleOutput:
    """Confidence-ordered unmasking with remasking (seqdiff.sampling.remasking), if that module exists."""
    from seqdiff.sampling.remasking import RemaskingSampler  # written by another area; imported lazily

    return sample(_Autocast(models.mdlm, dtype), models.mask_id, batch, length,
                  RemaskingSampler(models.schedule, steps, **kwargs), generator=generator, cache=True)


def first_hitting(models: Models, batch: int, length: int, steps: int | None, generator: torch.Generator,
                  dtype: torch.dtype | None = None) -> SampleOutput:
    """Event-driven sampler (seqdiff.sampling.fast): `steps` grid, or exact continuous time if steps is None."""
    return first_hitting_sample(models.mdlm, models.mask_id, batch, length, models.schedule, steps,
                                generator=generator, dtype=dtype)


def autoregressive(models: Models, batch: int, length: int, steps: int | None, generator: torch.Generator,
                   dtype: torch.dtype | None = None) -> SampleOutput:
    """AR transformer with KV cache (steps is ignored: always one call per token)."""
    return sample_autoregressive(models.ar, models.bos_id, batch, length, generator=generator, dtype=dtype)

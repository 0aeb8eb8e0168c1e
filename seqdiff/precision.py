"""Numeric precision chosen by measurement: `precision=auto` trains and runs in bf16 only where it pays.

Whether bfloat16 is faster than float32 depends on the machine, not on the code: an Intel Xeon with AMX tiles
runs a bf16 matmul ~9x faster than fp32, an AMD EPYC with avx512_bf16 ~3x, a CPU without native bf16 emulates
it and is slower; CUDA GPUs from Ampere on have bf16 tensor cores. So `auto` measures: it times one matmul in
each precision on the device at hand (0.4 s, once per process) and picks bf16 when it is at least
`MIN_SPEEDUP` times faster. Training then uses Lightning's `bf16-mixed` (weights and optimiser state stay
fp32; matmuls and attention run in bf16); inference wraps the backbone in `Autocast`.

    resolve_training_precision("auto")      -> "bf16-mixed" | "32-true"  (Lightning's names; others pass through)
    inference_dtype("auto" | "bf16" | "fp32", device) -> torch.bfloat16 | None
    Autocast(backbone, dtype)               -> the backbone, called under autocast(dtype) when dtype is set
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

log = logging.getLogger("seqdiff.precision")

# Mixed precision adds casts and keeps layer norms, softmax and the loss in fp32, so the end-to-end gain is
# well below the matmul speedup (measured: 3.1x matmul -> 1.4x training step on an AMD EPYC with avx512_bf16).
# Below 1.5x at the matmul the end-to-end gain is ~nothing and bf16's 8-bit mantissa is not worth it.
MIN_SPEEDUP = 1.5
INFERENCE = {"auto", "bf16", "fp32"}


@dataclass(frozen=True)
class PrecisionProbe:
    device: str
    fp32_gflops: float
    bf16_gflops: float  # 0.0 where bf16 is unsupported

    @property
    def speedup(self) -> float:
        return self.bf16_gflops / self.fp32_gflops if self.fp32_gflops > 0 else 0.0

    @property
    def use_bf16(self) -> bool:
        return self.speedup >= MIN_SPEEDUP

    def as_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup, "choice": "bf16" if self.use_bf16 else "fp32"}


def _timer(dtype: torch.dtype, device: str, n: int):
    """A function timing one (n x n) @ (n x n) matmul in `dtype`, or None where the dtype is unsupported."""
    try:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # warm-up: kernel selection, packing buffers
    except (RuntimeError, TypeError):
        return None
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        return time.perf_counter() - t0

    return once


def matmul_gflops(dtypes: tuple[torch.dtype, ...], device: str = "cpu", n: int = 768,
                  seconds: float = 0.4) -> list[float]:
    """Best-of-repeats GFLOP/s of an (n x n) @ (n x n) matmul in each dtype (0.0 if unsupported).

    The dtypes are timed alternately and the fastest repeat of each is kept, so a machine shared with other
    jobs slows both alike and the ratio stays meaningful."""
    timers = [_timer(d, device, n) for d in dtypes]
    best = [float("inf")] * len(dtypes)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for i, once in enumerate(timers):
            if once is not None:
                best[i] = min(best[i], once())
    return [2 * n**3 / b / 1e9 if b < float("inf") else 0.0 for b in best]


@functools.cache
def probe(device: str = "cpu") -> PrecisionProbe:
    """Measure fp32 and bf16 matmul throughput on `device` once per process."""
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return PrecisionProbe(device, matmul_gflops((torch.float32,), device)[0], 0.0)
    fp32, bf16 = matmul_gflops((torch.float32, torch.bfloat16), device)
    return PrecisionProbe(device, fp32, bf16)


def resolve_training_precision(precision: str | int, accelerator: str = "cpu") -> str | int:
    """Lightning precision for `precision`; "auto" becomes "bf16-mixed" or "32-true" by `probe()`."""
    if str(precision) != "auto":
        return precision
    device = "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()) \
        else "cpu"
    p = probe(device)
    choice = "bf16-mixed" if p.use_bf16 else "32-true"
    log.info("precision=auto on %s: fp32 matmul %.0f GFLOP/s, bf16 %.0f GFLOP/s (%.2fx) -> %s", device,
             p.fp32_gflops, p.bf16_gflops, p.speedup, choice)
    return choice


def inference_dtype(precision: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """None (fp32) or torch.bfloat16 for a CLI's `precision=auto|bf16|fp32`."""
    if precision not in INFERENCE:
        raise ValueError(f"precision must be one of {sorted(INFERENCE)}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    dev = torch.device(device)
    return torch.bfloat16 if probe("cuda" if dev.type == "cuda" else "cpu").use_bf16 else None


def autocast(dtype: torch.dtype | None, device: torch.device | str):
    """autocast(dtype) on `device`'s type, or a no-op for dtype=None (fp32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()


class Autocast(nn.Module):
    """Calls `backbone` under autocast(dtype); attributes samplers read (max_len, time_conditioning, causal,
    new_kv_caches, ...) are forwarded. Logits come back in the compute dtype; consumers upcast (`.float()`)."""

    def __init__(self, backbone: nn.Module, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.backbone, self.dtype = backbone, dtype

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        with autocast(self.dtype, x.device):
            return self.backbone(x, *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("backbone"), name)


def with_precision(backbone: nn.Module, precision: str) -> nn.Module:
    """The backbone itself for fp32, else wrapped in `Autocast` (see `inference_dtype`)."""
    device = next(backbone.parameters()).device
    dtype = inference_dtype(precision, device)
    if dtype is not None:
        log.info("running the network under %s autocast (precision=%s)", str(dtype).removeprefix("torch."),
                 precision)
    return Autocast(backbone, dtype) if dtype is not None else backbone

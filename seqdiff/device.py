"""Devices and random generators for inference: one resolver for every entry point, draws that work with any
generator/tensor device pairing.

- `resolve_device("auto" | "cpu" | "cuda" | "cuda:N")`: the `device=` option of sample, design, evaluate,
  infill, tables and finetune. "auto" is CUDA when available, else CPU; asking for CUDA without one is a
  one-line error rather than a crash deep inside torch.
- `make_generator(seed, device)`: a `torch.Generator` on `device`, seeded. Callers build it on the model's
  device so that every draw happens where the tensors live (no host round trip).
- `rand(shape, generator, device, dtype)`: `torch.rand` drawn on the *generator's* device and returned on
  `device`. torch refuses a CPU generator for a CUDA draw and vice versa ("Expected a 'cuda' device type for
  generator but found 'cpu'"), so every seeded draw in seqdiff (noise, samplers, designs) goes through here:
  a CPU generator still works with a CUDA model (one small copy per draw), and a CUDA generator with CPU
  tensors. With generator=None the global RNG of `device` is used, as plain torch.rand does.
  `randn`, `randint`, `randperm` and `multinomial` do the same for their torch namesakes.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """"auto" (or None) -> cuda if available else cpu; "cpu"; "cuda" / "cuda:N" (ValueError if unavailable)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = spec.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device={spec!r}: expected one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"device={spec!r} is not a valid device (expected cpu, cuda or cuda:N)") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={spec!r}, but CUDA is not available here (torch {torch.__version__}); "
                             "use device=cpu or device=auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={spec!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `seed` (the same seed gives different streams on CPU and
    CUDA: reproducibility holds per device type)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def rand(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
         device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Uniform [0, 1) of `shape` drawn with `generator` on its own device, returned on `device`."""
    where = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=where, dtype=dtype)
    return u if device is None else u.to(device)


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
          device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal of `shape` drawn with `generator` on its own device, returned on `device`."""
    where = generator.device if generator is not None else device
    z = torch.randn(shape, generator=generator, device=where, dtype=dtype)
    return z if device is None else z.to(device)


def randint(high: int, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
            device: str | torch.device | None = None) -> Tensor:
    """Integers uniform on [0, high) of `shape` drawn with `generator` on its own device, returned on `device`."""
    where = generator.device if generator is not None else device
    i = torch.randint(high, shape, generator=generator, device=where)
    return i if device is None else i.to(device)


def randperm(n: int, generator: torch.Generator | None = None,
             device: str | torch.device | None = None) -> Tensor:
    """`torch.randperm(n)` drawn on the generator's device, returned on `device`."""
    where = generator.device if generator is not None else device
    p = torch.randperm(n, generator=generator, device=where)
    return p if device is None else p.to(device)


def multinomial(probs: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """`torch.multinomial(probs, num_samples)` drawn on the generator's device, returned on probs' device."""
    if generator is None or generator.device == probs.device:
        return torch.multinomial(probs, num_samples, generator=generator)
    return torch.multinomial(probs.to(generator.device), num_samples, generator=generator).to(probs.device)


def kernel_report(head_dim: int = 32) -> dict[str, object]:
    """What a GPU run will use: `python -m seqdiff.device` (docs/reliability.md, first GPU run).

    flash_attention: whether SDPA's flash kernel runs for bf16 (B, H, L, head_dim) attention here, probed by
    forcing that one backend (it raises where flash cannot run); 32 is the default model's head size.
    selective_scan / causal_conv1d: whether mamba-ssm's compiled scan and causal-conv1d's kernel load (else the
    Caduceus backbones use the pure-PyTorch scan and nn.Conv1d)."""
    from seqdiff.backbones.mamba import _cuda_causal_conv1d, _cuda_selective_scan

    report: dict[str, object] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        return report | {"flash_attention": False, "selective_scan": False, "causal_conv1d": False}
    report |= {"device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(),
               "bf16": torch.cuda.is_bf16_supported()}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q = torch.randn(1, 2, 64, head_dim, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
        report["flash_attention"] = True
    except RuntimeError as e:
        report["flash_attention"] = f"no: {str(e).splitlines()[0]}"
    report["selective_scan"] = _cuda_selective_scan() is not None
    report["causal_conv1d"] = _cuda_causal_conv1d() is not None
    return report


if __name__ == "__main__":
    import json

    print(json.dumps(kernel_report(), default=str, indent=1))

"""Left-to-right generation from a causal backbone: `decode` is the one loop (KV-cached, one token per call,
or an uncached reference that re-runs the whole prefix); `sample_autoregressive` samples sequences with it.

Cached and uncached consume the generator identically (one `sample_categorical` draw of shape (B, 1) per
position), so for a fixed seed they produce the same tokens; the reference exists to test the cache. The
sequence is scored from a BOS token, exactly as `ar_nll` trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.loop import SampleOutput
from seqdiff.sampling.samplers import sample_categorical


def _autocast(dtype: torch.dtype | None, device: torch.device):
    """bf16 autocast around the network call when asked (inference only; fp32 otherwise)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _next_token(logits: Tensor, i: int, constraints: Constraints, temperature: float,
                generator: torch.Generator | None) -> Tensor:
    """Draw position i's token from last-position logits (B, V); fixed tokens override the draw."""
    log_p = (logits.float() / temperature).log_softmax(-1)[:, None]  # (B, 1, V)
    log_p = constraints.slice(i, i + 1).restrict(log_p)
    tok = sample_categorical(log_p, generator)[:, 0]  # (B,)
    fixed = constraints.fixed[i]
    return torch.where(fixed >= 0, fixed.expand_as(tok), tok)


@torch.no_grad()
def decode(backbone: nn.Module, prompt: Tensor, max_new_tokens: int, pick: Callable[[Tensor, int], Tensor],
           stop: Callable[[Tensor], bool] | None = None, cache: bool = True,
           dtype: torch.dtype | None = None) -> tuple[Tensor, int]:
    """Append tokens to `prompt` (B, P) left to right: `pick(logits (B, V), i) -> (B,)` chooses the i-th new
    token from the last position's logits, until `max_new_tokens` or `stop(new tokens (B,))` is true.

    cache=True: the prompt in one call, then one token per call through `backbone.new_kv_caches()`.
    cache=False: the reference, a full forward over prompt + new tokens at every position.
    Returns (new tokens (B, n), network calls n).
    """
    caches = backbone.new_kv_caches() if cache else None
    new: list[Tensor] = []
    inputs = prompt
    for i in range(max_new_tokens):
        with _autocast(dtype, prompt.device):
            if cache:  # the newest inputs only; the cache holds the rest
                logits = backbone(inputs, None, kv_caches=caches)[:, -1]
            else:
                logits = backbone(torch.cat([prompt, *(t[:, None] for t in new)], dim=1), None)[:, -1]
        token = pick(logits, i)
        new.append(token)
        if stop is not None and stop(token):
            break
        inputs = token[:, None]
    out = torch.stack(new, dim=1) if new else prompt.new_zeros((prompt.shape[0], 0))
    return out, len(new)


@torch.no_grad()
def sample_autoregressive(
    backbone: nn.Module,
    bos_id: int,
    num_samples: int,
    length: int,
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    cache: bool = True,
    temperature: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SampleOutput:
    """Generate (num_samples, length) tokens left to right from a causal backbone.

    cache=True: prefill BOS, then one token per call through `backbone.new_kv_caches()` (length calls).
    cache=False: the reference, a full forward over BOS + prefix at every position (also length calls, but
    each of growing length). `constraints` fixes tokens / restricts alphabets as for diffusion samplers.
    dtype=torch.bfloat16 runs the network under autocast.
    """
    if not getattr(backbone, "causal", False):
        raise ValueError("autoregressive sampling needs a causal backbone (model=transformer_ar)")
    max_len = getattr(backbone, "max_len", None)
    if max_len is not None and length > max_len:
        raise ValueError(f"length {length} exceeds the AR model's max_len={max_len} (BOS + {length - 1} inputs)")
    device = torch.device(device) if device else next(backbone.parameters()).device
    constraints = (constraints or Constraints.free(length)).to(device)
    if constraints.length != length:
        raise ValueError(f"constraints cover {constraints.length} positions but length={length}")

    def pick(logits: Tensor, i: int) -> Tensor:
        return _next_token(logits, i, constraints, temperature, generator)

    bos = torch.full((num_samples, 1), bos_id, dtype=torch.long, device=device)
    tokens, nfe = decode(backbone, bos, length, pick, cache=cache, dtype=dtype)
    return SampleOutput(tokens=tokens, nfe=nfe, steps=length)

"""Model FLOPs of the Transformer backbone (counted by hand) and the machine's measured matmul throughput.

Convention (as in PaLM's MFU): only matrix multiplies count, 2 FLOPs per multiply-add; the backward pass
costs twice the forward; attention is counted at its full L x L cost, halved for a causal model (a causal
kernel skips the upper triangle). MFU = model FLOPs per second of training / matmul FLOPs per second
measured on the same machine in the same run, so the ratio says how much of the attainable dense-matmul
speed the training loop turns into model arithmetic.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class TransformerShape:
    d_model: int
    n_layers: int
    n_heads: int
    mlp_ratio: int
    d_cond: int
    vocab_size: int
    causal: bool

    @classmethod
    def of(cls, m: nn.Module) -> TransformerShape:
        """Read the shape off a `seqdiff.backbones.Transformer`."""
        blk = m.blocks[0]
        return cls(d_model=m.embed.embedding_dim, n_layers=len(m.blocks), n_heads=blk.n_heads,
                   mlp_ratio=blk.mlp[0].out_features // m.embed.embedding_dim, d_cond=m.d_cond,
                   vocab_size=m.vocab_size, causal=bool(m.causal))


def transformer_forward_flops(shape: TransformerShape, batch: int, length: int, context: int | None = None) -> int:
    """Matmul FLOPs of one forward over (batch, length) new tokens attending to `context` keys.

    context=None: a full forward (keys = the `length` tokens themselves; causal attention counted at half).
    context=n: incremental decoding with a KV cache holding n keys in total (including the new tokens).
    Per block: qkv 6BLD^2, attention out 2BLD^2, MLP 4rBLD^2, QK^T and AV 2 * 2BLnD, adaLN 12 B d_c D;
    plus the conditioning MLP 4 B d_c^2, the output adaLN 4 B d_c D and the head 2BLDV.
    """
    B, L, D, r, dc, V = batch, length, shape.d_model, shape.mlp_ratio, shape.d_cond, shape.vocab_size
    if context is None:
        attn = 4 * B * L * L * D
        if shape.causal:
            attn //= 2
    else:
        attn = 4 * B * L * context * D
    block = (6 + 2 + 4 * r) * B * L * D * D + attn + 12 * B * dc * D
    return shape.n_layers * block + 4 * B * dc * dc + 4 * B * dc * D + 2 * B * L * D * V


def transformer_train_flops(shape: TransformerShape, batch: int, length: int) -> int:
    """Forward + backward (= 3x forward) matmul FLOPs of one training step on (batch, length)."""
    return 3 * transformer_forward_flops(shape, batch, length)


def generation_flops_ar(shape: TransformerShape, batch: int, length: int) -> int:
    """Matmul FLOPs of KV-cached generation of `length` tokens (BOS + length - 1 inputs, one per call)."""
    return sum(transformer_forward_flops(shape, batch, 1, context=i + 1) for i in range(length))


@dataclass
class MatmulThroughput:
    dtype: str
    size: int
    flops_per_second: float  # per wall-clock second
    flops_per_cpu_second: float  # per second of this process's CPU time (robust to other jobs' load)
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def measure_gemm(m: int, k: int, n: int, dtype: torch.dtype = torch.float32, seconds: float = 1.0,
                 min_reps: int = 3) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of (m, k) @ (k, n): repeated for about `seconds`, best of
    three windows each."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (threads, packing buffers)
    best, best_cpu = 0.0, 0.0
    for _ in range(3):
        reps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while reps < min_reps or time.perf_counter() - t0 < seconds / 3:
            torch.mm(a, b, out=out)
            reps += 1
        flops = 2.0 * m * k * n * reps
        best = max(best, flops / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, flops / max(time.process_time() - c0, 1e-9))
    return best, best_cpu


def measure_matmul_throughput(dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (512, 1024, 2048),
                              seconds: float = 2.0) -> MatmulThroughput:
    """The machine's attainable dense-matmul FLOP/s: the best square GEMM over `sizes`."""
    t0 = time.perf_counter()
    rates = {n: measure_gemm(n, n, n, dtype, seconds / len(sizes)) for n in sizes}
    n_best = max(rates, key=lambda n: rates[n][1])
    return MatmulThroughput(str(dtype).removeprefix("torch."), n_best, rates[n_best][0], rates[n_best][1],
                            time.perf_counter() - t0)

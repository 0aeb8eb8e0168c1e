"""Transformer denoiser: rotary positions, adaLN time conditioning (DiT-style), SDPA attention.

The same module serves as the bidirectional MDLM denoiser (causal=False) and as the left-to-right
autoregressive baseline (causal=True), so both share size, tokenizer and data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdiff.backbones.kmer_memory import KmerMemory
from seqdiff.backbones.ngram_prior import NgramPrior


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (B,) -> (B, dim). t is scaled by 1000 like DDPM step indices."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Rotary(nn.Module):
    """Rotary position embedding tables for head dimension `head_dim`, cached up to `max_len`.

    The rotation pairs feature i with feature i + head_dim/2 ("half" layout: two contiguous halves, no strided
    slices). The model's pairs are the interleaved (2i, 2i+1) of its q/k projection weights: `Block` permutes
    those weight rows so each pair lands at (i, i + hd/2) before the rotation. Attention scores only see q.k,
    which a permutation applied to both leaves unchanged, so this is the interleaved rotary embedding, computed
    with half the elementwise work (tests/test_transformer_speed.py checks it against the strided form).
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10_000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, hd/2)
        self.register_buffer("cos", torch.cat([angles.cos(), angles.cos()], -1), persistent=False)  # (L, hd)
        self.register_buffer("sin", torch.cat([-angles.sin(), angles.sin()], -1), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (..., L, hd) in half layout -> rotated x, positions offset..offset+L-1."""
        L, half = x.shape[-2], x.shape[-1] // 2
        cos, sin = self.cos[offset : offset + L].to(x.dtype), self.sin[offset : offset + L].to(x.dtype)
        return x * cos + torch.cat([x[..., half:], x[..., :half]], dim=-1) * sin


def half_layout_rows(d_model: int, n_heads: int) -> Tensor:
    """Row order of a (3 d_model, d_model) qkv weight that puts each head's interleaved rotary pairs (2i, 2i+1)
    of q and k at (i, i + hd/2); v's rows keep their order."""
    hd = d_model // n_heads
    within = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])  # (hd,)
    qk = (torch.arange(2 * n_heads)[:, None] * hd + within[None]).flatten()
    return torch.cat([qk, torch.arange(2 * d_model, 3 * d_model)])


_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_flash_cpu_backward = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


class _FlashBf16Fp32Backward(torch.autograd.Function):
    """CPU flash attention on bf16 q/k/v whose backward runs the fp32 kernel.

    PyTorch's CPU flash-attention backward is slower in bf16 than in fp32 at head dim 32 (34 vs 26 ms per layer
    for 16 x 4 heads x 512 x 32 on 2 Xeon cores with AMX), while its bf16 forward is faster (6.5 vs 11 ms). This
    keeps the bf16 forward and computes the gradients in fp32 from the saved bf16 inputs, output and fp32
    log-sum-exp: the same gradients as bf16 SDPA up to rounding (slightly closer to fp32).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
        out, lse = _flash_cpu(q, k, v, 0.0, is_causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal = is_causal
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _flash_cpu_backward(grad.float(), q.float(), k.float(), v.float(), out.float(), lse, 0.0,
                                         ctx.is_causal)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None


def attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool, dropout_p: float) -> Tensor:
    """SDPA, except bf16 training on CPU with head dim <= 32 (see `_FlashBf16Fp32Backward`)."""
    if (q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.shape[-1] <= 32 and dropout_p == 0.0
            and _flash_cpu is not None and torch.is_grad_enabled() and q.requires_grad
            and q.shape == k.shape == v.shape):
        return _FlashBf16Fp32Backward.apply(q, k, v, is_causal)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, dropout_p=dropout_p)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated by the conditioning vector c (adaLN).

    Residual branches are gated as h + (1 + gate) * f(modulate(norm(h))), with the adaLN projection (shift,
    scale, gate) zero-initialised. This is not DiT's adaLN-Zero: there the gate multiplies f directly, so every
    block starts as the identity, whereas here a block starts as a plain pre-norm block (gate 0 -> factor 1).
    """

    def __init__(self, d_model: int, n_heads: int, d_cond: int, mlp_ratio: int, dropout: float, causal: bool,
                 gelu_approximate: str = "tanh"):
        super().__init__()
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.register_buffer("qkv_rows", half_layout_rows(d_model, n_heads), persistent=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(approximate=gelu_approximate),
            nn.Linear(mlp_ratio * d_model, d_model),
        )
        self.ada = nn.Linear(d_cond, 6 * d_model)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def attention(self, h: Tensor, rotary: Rotary, kv_cache: dict | None = None) -> Tensor:
        B, L, D = h.shape
        # q/k rows in half layout (Rotary); (3, B, H, L, hd)
        qkv = F.linear(h, self.qkv.weight[self.qkv_rows]).view(B, L, 3, self.n_heads, D // self.n_heads)
        qk, v = qkv.permute(2, 0, 3, 1, 4).split([2, 1])  # split, not slices: its backward is one cat
        offset = 0 if kv_cache is None else kv_cache.get("len", 0)
        q, k = rotary(qk, offset).unbind(0)  # q and k rotated in one pass
        v = v.squeeze(0)
        if kv_cache is not None:  # incremental AR decoding: write keys/values into a preallocated buffer
            if offset and L > 1:
                raise ValueError("after the prefill, a KV-cached causal step takes one token at a time")
            if "k" not in kv_cache:  # (B, H, max_len, hd); torch.cat per token would copy the cache each step
                shape = (B, self.n_heads, rotary.cos.shape[0], D // self.n_heads)
                kv_cache["k"], kv_cache["v"] = k.new_empty(shape), v.new_empty(shape)
            kv_cache["k"][:, :, offset : offset + L] = k
            kv_cache["v"][:, :, offset : offset + L] = v
            k, v = kv_cache["k"][:, :, : offset + L], kv_cache["v"][:, :, : offset + L]
        is_causal = self.causal and (kv_cache is None or offset == 0) and L > 1
        out = attention(q, k, v, is_causal, self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))

    def forward(self, h: Tensor, c: Tensor, rotary: Rotary, kv_cache: dict | None = None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each (B, D)
        h = h + (1.0 + gate1[:, None]) * self.attention(modulate(self.norm1(h), shift1, scale1), rotary, kv_cache)
        h = h + (1.0 + gate2[:, None]) * self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h


class Transformer(nn.Module):
    """(x: LongTensor[B, L], t: FloatTensor[B] | None) -> logits FloatTensor[B, L, V].

    time_conditioning=False ignores t (MDLM shows masked diffusion needs no time input), which lets samplers
    reuse logits between steps where no token changed. abs_positions adds learned absolute position
    embeddings, which tables use as column embeddings.

    conv_kernel=k > 0 adds a depthwise convolution stem over the token embeddings (residual; centred for a
    bidirectional model, left-padded for a causal one): every position starts with an ordered view of its k
    neighbours, the local k-mer that DNA models (Caduceus, Enformer) read with convolutions, instead of having
    to assemble it from attention heads.

    kmer_orders=[k, ...] adds an explicit k-mer memory (`seqdiff.backbones.kmer_memory.KmerMemory`): learned
    vectors for the fully visible k-mers on each side of a position (ids 0 .. kmer_alphabet-1 are the bases;
    the character tokenizer's A C G T), the table an order-k Markov chain keeps, summed into the embeddings.

    ngram_context=K adds an n-gram prior (`seqdiff.backbones.ngram_prior.NgramPrior`): smoothed count tables of
    the training split, looked up by up to K visible bases around each position (before it for a causal model),
    whose log-probabilities are added to the logits of A C G T; the network learns the residual. The tables are
    filled by `seqdiff.train` from the training split before the first step and saved in the checkpoint.

    gelu_approximate: the MLP's GELU, "tanh" (what checkpoints without the key were trained with) or "none"
    (exact erf GELU, which the configs use: half the CPU time of the tanh form, fwd + bwd, in bf16).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 256,
        n_layers: int = 4,
        n_heads: int = 4,
        mlp_ratio: int = 4,
        d_cond: int = 128,
        dropout: float = 0.0,
        time_conditioning: bool = False,
        causal: bool = False,
        abs_positions: bool = False,
        conv_kernel: int = 0,
        kmer_orders: list[int] | None = None,
        kmer_dim: int = 32,
        kmer_alphabet: int = 4,
        kmer_mask_id: int | None = None,
        ngram_context: int | None = None,
        ngram_alpha: float = 4.0,
        ngram_input: bool = True,
        gelu_approximate: str = "tanh",
    ) -> None:
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into n_heads={n_heads} heads of even size")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.time_conditioning, self.causal = time_conditioning, causal
        if conv_kernel < 0 or (conv_kernel and not causal and conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or a positive odd width for a bidirectional model, "
                             f"got {conv_kernel}")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.conv_kernel = conv_kernel
        self.conv = nn.Conv1d(d_model, d_model, conv_kernel, groups=d_model) if conv_kernel else None
        self.kmer = (KmerMemory(d_model, kmer_orders, kmer_dim, kmer_alphabet, causal,
                                kmer_mask_id) if kmer_orders else None)
        # n-gram prior: count tables of the training split (filled by `fit` before training), added to the base
        # logits and, projected, to the embeddings
        self.ngram = NgramPrior(ngram_context, ngram_alpha, causal) if ngram_context is not None else None
        self.ngram_in = nn.Linear(4, d_model, bias=False) if self.ngram is not None and ngram_input else None
        if self.ngram_in is not None:  # as small as the token embeddings, which it must not drown
            nn.init.normal_(self.ngram_in.weight, std=0.02)
        self.pos = nn.Embedding(max_len, d_model) if abs_positions else None
        self.rotary = Rotary(d_model // n_heads, max_len)
        self.cond = nn.Sequential(nn.Linear(d_cond, d_cond), nn.SiLU(), nn.Linear(d_cond, d_cond))
        self.d_cond = d_cond
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_cond, mlp_ratio, dropout, causal, gelu_approximate)
                                    for _ in range(n_layers))
        self.norm_out = nn.LayerNorm(d_model, elementwise_affine=False)
        self.ada_out = nn.Linear(d_cond, 2 * d_model)
        nn.init.zeros_(self.ada_out.weight)
        nn.init.zeros_(self.ada_out.bias)
        self.head = nn.Linear(d_model, vocab_size)
        nn.init.normal_(self.embed.weight, std=0.02)

    def conditioning(self, t: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        if t is None or not self.time_conditioning:
            t = torch.zeros(batch_size, device=device)
        return self.cond(timestep_embedding(t.to(device), self.d_cond))  # (B, d_cond)

    def forward(self, x: Tensor, t: Tensor | None = None, kv_caches: list[dict] | None = None,
                cond: Tensor | None = None) -> Tensor:
        """cond: optional (B, d_cond) added to the time conditioning (class labels: backbones/conditional.py)."""
        B, L = x.shape
        offset = 0 if kv_caches is None else kv_caches[0].get("len", 0)
        if offset + L > self.max_len:
            raise ValueError(f"sequence length {offset + L} exceeds the model's max_len={self.max_len}")
        h = self.embed(x)  # (B, L, D)
        if self.conv is not None:
            if kv_caches is not None:
                raise RuntimeError("KV-cached decoding is not implemented for conv_kernel > 0")
            k = self.conv_kernel
            pad = (k - 1, 0) if self.causal else (k // 2, k // 2)
            h = h + self.conv(F.pad(h.transpose(1, 2), pad)).transpose(1, 2)
        if self.kmer is not None:
            if kv_caches is not None:
                raise RuntimeError("KV-cached decoding is not implemented for kmer_orders")
            h = h + self.kmer(x)
        prior = None
        if self.ngram is not None:
            if kv_caches is not None:
                raise RuntimeError("KV-cached decoding is not implemented for ngram_context")
            # centred log-probabilities of the bases: they reshape the distribution over A C G T, not the odds of
            # the bases against N or the special tokens
            prior = self.ngram(x)
            prior = prior - prior.mean(-1, keepdim=True)  # (B, L, 4), fp32
            if self.ngram_in is not None:
                h = h + self.ngram_in(prior)
        if self.pos is not None:
            h = h + self.pos.weight[offset : offset + L]
        c = self.conditioning(t, B, x.device)
        if cond is not None:
            c = c + cond
        for i, block in enumerate(self.blocks):
            h = block(h, c, self.rotary, None if kv_caches is None else kv_caches[i])
        if kv_caches is not None:
            for cache in kv_caches:
                cache["len"] = offset + L
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        logits = self.head(modulate(self.norm_out(h), shift, scale))  # (B, L, V)
        if prior is not None:  # residual on the n-gram model: the network learns what the counts miss
            logits = logits.float()  # in fp32: bf16 would round the prior's log-probabilities to ~1%
            logits = torch.cat([logits[..., :4] + prior, logits[..., 4:]], dim=-1)
        return logits

    def new_kv_caches(self) -> list[dict]:
        """Empty per-layer caches for incremental (causal) decoding with `forward(x, kv_caches=...)`."""
        if not self.causal:
            raise RuntimeError("KV caching is only valid for a causal (autoregressive) transformer")
        return [{} for _ in self.blocks]

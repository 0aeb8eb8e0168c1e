"""The transformer's faster step computes the same model: half-layout rotary on permuted q/k rows equals the
interleaved rotary of the weights as stored (so older checkpoints load unchanged), and bf16 attention with the
fp32 backward gives SDPA's gradients."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from seqdiff.backbones.transformer import Block, Rotary, Transformer, attention


def interleaved_reference(block: Block, h: torch.Tensor) -> torch.Tensor:
    """Block.attention as first written: interleaved rotary pairs (2i, 2i+1) on the unpermuted projection."""
    B, L, D = h.shape
    H = block.n_heads
    hd = D // H
    q, k, v = block.qkv(h).view(B, L, 3, H, hd).permute(2, 0, 3, 1, 4)
    inv_freq = 1.0 / 10_000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    angles = torch.outer(torch.arange(L, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()

    def rot(x):
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)

    out = F.scaled_dot_product_attention(rot(q), rot(k), v, is_causal=block.causal)
    return block.proj(out.transpose(1, 2).reshape(B, L, D))


@settings(max_examples=20, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), hd=st.sampled_from([2, 8, 16]), length=st.integers(1, 24),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_half_layout_rotary_is_the_interleaved_model(heads, hd, length, causal, seed):
    torch.manual_seed(seed)
    D = heads * hd
    block = Block(D, heads, 8, 2, 0.0, causal)
    rotary = Rotary(hd, 32)
    h = torch.randn(2, length, D)
    torch.testing.assert_close(block.attention(h, rotary), interleaved_reference(block, h), atol=1e-5, rtol=1e-4)


def test_rotary_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    rotary = Rotary(16, 64)
    q, k = torch.randn(16), torch.randn(16)
    tile = lambda x: x.expand(64, 16)  # noqa: E731 - the same vector at every position
    qr, kr = rotary(tile(q)), rotary(tile(k))
    s = qr @ kr.T  # (64, 64): s[i, j] depends on j - i only
    for d in (-5, 0, 3):
        diag = torch.diagonal(s, offset=d)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-4, rtol=1e-4)


def test_checkpoint_state_is_unchanged_by_the_layout():
    """The permutation is a non-persistent buffer: the state dict has exactly the weights it always had."""
    m = Transformer(7, 32, d_model=32, n_layers=2, n_heads=2)
    keys = set(m.state_dict())
    assert not any("qkv_rows" in k or "rotary" in k for k in keys)
    assert {"blocks.0.qkv.weight", "blocks.1.qkv.weight"} <= keys


def test_bf16_attention_gradients_match_sdpa():
    torch.manual_seed(0)
    for causal in (False, True):
        qkv = torch.randn(3, 2, 4, 64, 32)
        g = torch.randn(2, 4, 64, 32)
        grads = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x = qkv.to(dtype).detach().requires_grad_()
            out = attention(x[0], x[1], x[2], causal, 0.0)
            if dtype == torch.bfloat16:  # the custom path is the one taken
                assert "FlashBf16Fp32Backward" in type(out.grad_fn).__name__
            out.backward(g.to(dtype))
            grads[name] = (out.detach().float(), x.grad.float())
        (o32, g32), (o16, g16) = grads["fp32"], grads["bf16"]
        assert (o16 - o32).abs().max() < 0.05
        assert (g16 - g32).norm() / g32.norm() < 0.02  # bf16 rounding of the inputs, not a wrong gradient


def test_bf16_attention_falls_back_where_the_kernel_does_not_apply():
    x = torch.randn(3, 1, 2, 8, 64, dtype=torch.bfloat16, requires_grad=True)  # head dim 64: bf16 SDPA is faster
    assert "FlashBf16Fp32Backward" not in type(attention(x[0], x[1], x[2], False, 0.0).grad_fn).__name__
    with torch.no_grad():  # inference: plain SDPA
        assert attention(x[0], x[1], x[2], False, 0.0).grad_fn is None


def test_gelu_default_is_tanh_for_old_checkpoints_and_exact_in_the_config():
    assert Transformer(7, 16, d_model=16, n_layers=1, n_heads=2).blocks[0].mlp[1].approximate == "tanh"
    cfg = OmegaConf.load("configs/model/transformer.yaml")
    assert cfg.gelu_approximate == "none"

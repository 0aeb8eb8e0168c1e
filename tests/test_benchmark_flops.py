"""The Transformer FLOP counter against a hand count and against torch's FlopCounterMode."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from seqdiff.backbones import Transformer
from seqdiff.benchmarks.flops import (
    TransformerShape,
    generation_flops_ar,
    measure_gemm,
    measure_matmul_throughput,
    transformer_forward_flops,
    transformer_train_flops,
)

B, L, D, H, R, DC, V = 2, 8, 16, 2, 4, 8, 10


def one_layer(causal=False):
    torch.manual_seed(0)
    return Transformer(V, L, d_model=D, n_layers=1, n_heads=H, mlp_ratio=R, d_cond=DC, causal=causal)


def test_shape_is_read_off_the_model():
    s = TransformerShape.of(one_layer(causal=True))
    shape = (s.d_model, s.n_layers, s.n_heads, s.mlp_ratio, s.d_cond, s.vocab_size, s.causal)
    assert shape == (D, 1, H, R, DC, V, True)


def test_one_layer_forward_matches_hand_count():
    # 2 FLOPs per multiply-add, (B, L) = (2, 8), D = 16, mlp 4D = 64, d_cond = 8, V = 10:
    qkv = 2 * (B * L) * D * (3 * D)  # 24576
    proj = 2 * (B * L) * D * D  # 8192
    mlp = 2 * (B * L) * D * (R * D) * 2  # 65536
    scores = 2 * B * H * L * L * (D // H)  # QK^T: 4096
    mix = 2 * B * H * L * L * (D // H)  # attention weights @ V: 4096
    ada = 2 * B * DC * (6 * D)  # 3072
    cond = 2 * B * DC * DC * 2  # 512
    ada_out = 2 * B * DC * (2 * D)  # 1024
    head = 2 * (B * L) * D * V  # 5120
    hand = qkv + proj + mlp + scores + mix + ada + cond + ada_out + head
    assert hand == 116_224
    assert transformer_forward_flops(TransformerShape.of(one_layer()), B, L) == hand
    # causal attention counted at half; backward = 2x forward
    causal = TransformerShape.of(one_layer(causal=True))
    assert transformer_forward_flops(causal, B, L) == hand - (scores + mix) // 2
    assert transformer_train_flops(causal, B, L) == 3 * (hand - (scores + mix) // 2)


def test_forward_matches_torch_flop_counter_plus_attention():
    """FlopCounterMode counts every matmul but not the CPU flash-attention kernel: add QK^T and AV by hand."""
    m, x = one_layer(), torch.randint(0, 4, (B, L))
    with FlopCounterMode(display=False) as fc:
        m(x)
    attention = 4 * B * L * L * D
    assert fc.get_total_flops() + attention == transformer_forward_flops(TransformerShape.of(m), B, L)


def test_kv_cache_generation_count():
    s = TransformerShape.of(one_layer(causal=True))
    one = transformer_forward_flops(s, B, 1, context=5)
    assert one == transformer_forward_flops(s, B, 1, context=1) + 4 * B * 4 * D  # 4 more keys attended
    assert generation_flops_ar(s, B, 3) == sum(transformer_forward_flops(s, B, 1, context=c) for c in (1, 2, 3))


def test_matmul_throughput_is_measured():
    wall, cpu = measure_gemm(64, 32, 16, seconds=0.01)
    assert wall > 0 and cpu > 0
    mm = measure_matmul_throughput(torch.float32, sizes=(64, 128), seconds=0.05)
    assert mm.size in (64, 128) and mm.flops_per_second > 1e6 and mm.flops_per_cpu_second > 1e6
    assert mm.dtype == "float32"

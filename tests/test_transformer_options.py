"""Transformer option: the convolution stem."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.backbones import Transformer

KW = dict(vocab_size=10, max_len=24, d_model=32, n_layers=2, n_heads=2, d_cond=32)


@settings(max_examples=20, deadline=None)
@given(pos=st.integers(0, 23), kernel=st.sampled_from([1, 3, 4, 9]), causal=st.booleans())
def test_conv_stem_reaches_exactly_its_neighbours(pos, kernel, causal):
    """With one layer and no attention reach, a change at `pos` moves logits only where the convolution or the
    attention can see it; a causal model never changes logits before `pos` (no leak from the future)."""
    if not causal and kernel % 2 == 0:
        with pytest.raises(ValueError, match="conv_kernel"):
            Transformer(**KW, conv_kernel=kernel, causal=causal)
        return
    torch.manual_seed(0)
    m = Transformer(**KW, conv_kernel=kernel, causal=causal).eval()
    x = torch.randint(0, 5, (1, 24), generator=torch.Generator().manual_seed(pos))
    y = x.clone()
    y[0, pos] = (y[0, pos] + 1) % 5
    with torch.no_grad():
        changed = (m(x) - m(y)).abs().amax(-1)[0] > 1e-6
    if causal:
        assert not changed[:pos].any()
    assert changed[pos]


def test_conv_stem_changes_the_function_and_refuses_kv_caching():
    torch.manual_seed(0)
    plain = Transformer(**KW).eval()
    conv = Transformer(**KW, conv_kernel=5).eval()
    missing, unexpected = conv.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["conv.weight", "conv.bias"] and not unexpected
    x = torch.randint(0, 5, (2, 24))
    with torch.no_grad():
        assert not torch.allclose(conv(x), plain(x))
        torch.nn.init.zeros_(conv.conv.weight)
        torch.nn.init.zeros_(conv.conv.bias)
        torch.testing.assert_close(conv(x), plain(x))  # a zero stem is the plain transformer
    causal = Transformer(**KW, conv_kernel=3, causal=True).eval()
    with pytest.raises(RuntimeError, match="conv_kernel"):
        causal(x[:, :1], None, kv_caches=causal.new_kv_caches())

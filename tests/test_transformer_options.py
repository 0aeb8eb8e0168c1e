"""Transformer options: the convolution stem and the k-mer memory."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.backbones import Transformer
from seqdiff.backbones.kmer_memory import KmerMemory

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


# ---- the k-mer memory -------------------------------------------------------------------------------------
def _expected_rows(mem: KmerMemory, x: list[int]) -> list[list[int]]:
    """Brute force: the table row of every (order, side) k-mer at every position."""
    L, rows = len(x), []
    for i in range(L):
        row, j = [], 0
        for k in mem.orders:
            for side in mem.sides:
                span = {"left": range(i - k, i), "right": range(i + 1, i + k + 1),
                        "inclusive": range(i - k + 1, i + 1)}[side]
                letter = {b: b for b in range(mem.alphabet)} | ({mem.mask_id: mem.alphabet} if mem.mask_id else {})
                if all(0 <= p < L and x[p] in letter for p in span):
                    code = 0
                    for p in span:
                        code = code * mem.letters + letter[x[p]]
                    row.append(mem.offsets[j] + code)
                else:
                    row.append(mem.null)
                j += 1
        rows.append(row)
    return rows


@settings(max_examples=40, deadline=None)
@given(x=st.lists(st.integers(0, 9), min_size=1, max_size=30),
       orders=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True), causal=st.booleans(),
       mask_id=st.sampled_from([None, 6]))
def test_kmer_memory_indexes_exactly_the_visible_kmers(x, orders, causal, mask_id):
    """Every (order, side) lookup is the base-4 (base-5 with [MASK] as a letter) code of the k tokens next to
    the position, or the null row when any of them is not a letter (N, pad; mask unless it is a letter) or
    falls outside the window; a causal memory never looks ahead."""
    mem = KmerMemory(8, orders, dim=4, causal=causal, mask_id=mask_id)
    got = mem.indices(torch.tensor([x])).squeeze(0).tolist()
    assert got == _expected_rows(mem, x)


@settings(max_examples=20, deadline=None)
@given(pos=st.integers(0, 23), causal=st.booleans())
def test_kmer_memory_never_reads_the_predicted_token_or_the_future(pos, causal):
    """Changing the base at `pos`: a bidirectional memory's output moves only at positions whose k-mer on either
    side holds `pos`, never at `pos` itself (the token a masked position must predict); a causal one only at
    pos..pos+k-1 (no look-ahead)."""
    torch.manual_seed(0)
    k = 4
    mem = KmerMemory(8, [k], dim=4, causal=causal).eval()
    x = torch.randint(0, 4, (1, 24), generator=torch.Generator().manual_seed(pos))
    y = x.clone()
    y[0, pos] = (y[0, pos] + 1) % 4
    with torch.no_grad():
        changed = ((mem(x) - mem(y)).abs().amax(-1)[0] > 0).nonzero().flatten().tolist()
    if causal:  # the k-mer ending at i holds pos and lies inside the window
        expected = [i for i in range(24) if i - k + 1 <= pos <= i and i - k + 1 >= 0]
    else:  # the k bases before i, or after i, hold pos and lie inside the window
        expected = [i for i in range(24) if (i - k <= pos < i and i - k >= 0) or (i < pos <= i + k and i + k < 24)]
    assert changed == expected and pos not in (expected if not causal else [])


def test_kmer_memory_in_the_transformer_and_its_errors():
    torch.manual_seed(0)
    m = Transformer(**KW, kmer_orders=[3, 5])
    assert m.kmer.table.num_embeddings == 2 * (4**3 + 4**5) + 1 and m.kmer.table.weight._no_weight_decay
    x = torch.randint(0, 5, (2, 24))
    m(x).sum().backward()
    assert m.kmer.table.weight.grad[m.kmer.null].abs().sum() == 0  # the null row stays zero
    with pytest.raises(ValueError, match="kmer_orders"):
        Transformer(**KW, kmer_orders=[11])
    with pytest.raises(ValueError, match="kmer_orders"):
        Transformer(**KW, kmer_orders=[3, 3])
    causal = Transformer(**KW, kmer_orders=[3], causal=True).eval()
    with pytest.raises(RuntimeError, match="kmer_orders"):
        causal(x[:, :1], None, kv_caches=causal.new_kv_caches())

"""The n-gram prior: count tables equal a brute-force count, lookups use exactly the visible context, it never
reads the token it predicts (nor, causal, the future), and it travels with the transformer and its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.backbones import Transformer
from seqdiff.backbones.ngram_prior import NgramPrior, holding_out, split_context

MASK = 6
KW = dict(vocab_size=10, max_len=40, d_model=32, n_layers=1, n_heads=2, d_cond=32)


def _train(seed: int = 0, n: int = 3000) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n).astype(np.uint8)
    a[rng.random(n) < 0.01] = 4  # a few N
    return [a, rng.integers(0, 4, 400).astype(np.uint8)]


def _brute_probs(seqs, K: int, alpha: float, rc: bool, nl: int, nr: int, left: list[int], right: list[int],
                 exclude: int | None = None):
    """Smoothed p(b | left l-mer, right r-mer) by counting the fully visible (K+1)-windows directly (leaving out
    the windows centred on position `exclude` of the first sequence)."""
    seqs = [np.asarray(s, dtype=np.int64) for s in seqs]
    if rc:
        seqs = seqs + [np.where(s < 4, 3 - s, s)[::-1] for s in seqs]

    def counts(nl, nr, left, right):
        c = np.zeros(4)
        for k, s in enumerate(seqs):
            for start in range(len(s) - K):
                if k == 0 and start + nl == exclude:
                    continue
                w = s[start : start + K + 1]
                if (w >= 4).any():
                    continue
                # left[0] is the base next to the centre; the window holds l bases, the centre, r bases
                if list(w[:nl][::-1]) == left[:nl] and list(w[nl + 1 : nl + 1 + nr]) == right[:nr]:
                    c[w[nl]] += 1
        return c

    def probs(nl, nr):
        if nl == nr == 0:
            parent = np.full(4, 0.25)
        elif nl >= nr:
            parent = probs(nl - 1, nr)
        else:
            parent = probs(nl, nr - 1)
        c = counts(nl, nr, left, right)
        return (c + alpha * parent) / (c.sum() + alpha)

    return probs(nl, nr)


def _visible_context(x: torch.Tensor, i: int, K: int) -> tuple[int, int, list[int], list[int]]:
    """(l, r, left bases nearest first, right bases nearest first) for position i of a window, by walking it."""
    run_l = 0
    while i - run_l - 1 >= 0 and x[i - run_l - 1] < 4:
        run_l += 1
    run_r = 0
    while i + run_r + 1 < len(x) and x[i + run_r + 1] < 4:
        run_r += 1
    nl, nr = (int(v) for v in split_context(torch.tensor(min(run_l, K)), torch.tensor(min(run_r, K)), K))
    assert nl + nr <= K and nl <= run_l and nr <= run_r
    return nl, nr, [int(x[i - j]) for j in range(1, nl + 1)], [int(x[i + j]) for j in range(1, nr + 1)]


@settings(max_examples=12, deadline=None)
@given(data=st.data(), K=st.integers(1, 4), rc=st.booleans())
def test_lookup_equals_a_brute_force_count(data, K, rc):
    """For a random window with masks, the prior at each masked position is the backed-off count estimate of
    its (l, r) context, l and r the visible runs split by `split_context`."""
    seqs = _train(0, 600)
    prior = NgramPrior(K, alpha=3.0, rc=rc).fit(seqs)
    x = torch.tensor([data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, MASK]), min_size=12, max_size=12))])
    out = prior(x)[0].exp()
    for i in range(12):
        nl, nr, left, right = _visible_context(x[0], i, K)
        want = _brute_probs(seqs, K, 3.0, rc, nl, nr, left, right)
        assert torch.allclose(out[i].double(), torch.from_numpy(want), atol=1e-5), (i, nl, nr)


def test_split_context_uses_the_budget_evenly():
    sl = lambda a, b: tuple(int(v) for v in split_context(torch.tensor(a), torch.tensor(b), 8))  # noqa: E731
    assert sl(8, 8) == (4, 4) and sl(8, 1) == (7, 1) and sl(2, 8) == (2, 6) and sl(0, 0) == (0, 0)


@settings(max_examples=25, deadline=None)
@given(pos=st.integers(0, 15), causal=st.booleans(), seed=st.integers(0, 100))
def test_never_reads_the_predicted_token_or_the_future(pos, causal, seed):
    """Changing the base at `pos` never changes the prior at `pos` (bidirectional: that is the token it
    predicts); for a causal prior (which predicts token i + 1 at i) it never changes anything before `pos`."""
    prior = NgramPrior(5, causal=causal).fit(_train(1, 800))
    x = torch.randint(0, 4, (1, 16), generator=torch.Generator().manual_seed(seed))
    x[0, torch.randperm(16, generator=torch.Generator().manual_seed(seed))[:4]] = MASK
    y = x.clone()
    y[0, pos] = (y[0, pos] + 1) % 4 if x[0, pos] < 4 else 0
    a, b = prior(x)[0], prior(y)[0]
    changed = (a - b).abs().sum(-1) > 0
    if causal:
        assert not changed[:pos].any()
    else:
        assert not changed[pos]


def test_fitted_prior_matches_the_markov_chain_on_clean_text():
    """A causal prior with alpha -> 0 on a long clean sequence is the empirical Markov chain."""
    seqs = _train(2, 5000)[:1]
    prior = NgramPrior(2, alpha=1e-6, causal=True, rc=False).fit(seqs)
    s = np.asarray(seqs[0], dtype=np.int64)
    x = torch.tensor([[0, 1, 2]])  # predicting the base after "A C G": context (C G) -> next
    keep = [(s[i] < 4) and (s[i + 1] < 4) and (s[i + 2] < 4) for i in range(len(s) - 2)]
    ctx = [i for i in range(len(s) - 2) if keep[i] and s[i] == 1 and s[i + 1] == 2]
    want = np.bincount([s[i + 2] for i in ctx], minlength=4) / len(ctx)
    assert np.allclose(prior(x)[0, 2].exp().numpy(), want, atol=1e-4)


def test_in_the_transformer_the_prior_is_a_residual_and_saved(tmp_path):
    """With the input projection zeroed, the logits of A C G T are the network's plus the prior's centred
    log-probabilities (so the odds of the bases against the other tokens are the network's) and the other
    columns are untouched; the fitted tables survive a state_dict round trip."""
    torch.manual_seed(0)
    m = Transformer(**KW, ngram_context=4).eval()
    assert not bool(m.ngram.fitted)
    m.ngram.fit(_train(3, 2000))
    m2 = Transformer(**KW, ngram_context=4)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    m2.load_state_dict(torch.load(tmp_path / "m.pt"))
    assert bool(m2.ngram.fitted) and torch.equal(m2.ngram.counts, m.ngram.counts)
    x = torch.randint(0, 4, (2, 40))
    x[:, ::3] = MASK
    with torch.no_grad():
        m.ngram_in.weight.zero_()
        prior = m.ngram(x)
        full = m(x)
        m.ngram.counts.zero_()  # no counts: a uniform prior
        plain = m(x)
    assert torch.allclose(full[..., :4] - plain[..., :4], prior - prior.mean(-1, keepdim=True), atol=1e-4)
    assert torch.allclose(full[..., 4:], plain[..., 4:])
    causal = Transformer(**KW, ngram_context=3, causal=True).eval()
    with pytest.raises(RuntimeError, match="ngram_context"):
        causal(x[:, :4], kv_caches=causal.new_kv_caches())
    with pytest.raises(ValueError, match="ngram_context"):
        NgramPrior(11)


@settings(max_examples=10, deadline=None)
@given(data=st.data(), K=st.integers(1, 3), causal=st.booleans())
def test_holding_out_equals_counts_without_that_occurrence(data, K, causal):
    """Inside `holding_out`, the prior of a training window's position is the one fitted on the training data
    without that position's occurrence (the brute-force count skipping it)."""
    rng = np.random.default_rng(K)
    seq = rng.integers(0, 4, 300).astype(np.uint8)
    prior = NgramPrior(K, alpha=2.0, causal=causal, rc=False).fit([seq])
    a = data.draw(st.integers(K + 1, 300 - 13 - K))
    x0 = torch.tensor(seq[a : a + 12].astype(np.int64))[None]
    x = x0.clone()
    x[0, data.draw(st.lists(st.integers(0, 11), max_size=5))] = MASK
    i = data.draw(st.integers(0, 10))
    with holding_out(torch.nn.Module(), x0):  # no prior on a plain module: nothing happens
        pass
    holder = torch.nn.Module()
    holder.ngram = prior
    with holding_out(holder, x0):
        got = prior(x)[0, i].exp()
    assert prior.holdout is None
    if causal:  # position i predicts token i + 1 of the window from the bases ending at i
        if x[0, i] >= 4:  # a masked input: the unigram alone (not checked here)
            return
        run = 1
        while i - run >= 0 and x[0, i - run] < 4 and run < K:
            run += 1
        left = [int(x[0, i - j]) for j in range(run)]
        # the causal table (l, 0) holds the base after an l-mer; hold out the occurrence of token i + 1
        held = torch.tensor(seq[a + 1 : a + 13].astype(np.int64))[None]
        with holding_out(holder, held):
            got = prior(x)[0, i].exp()
        want = _brute_probs([seq], K, 2.0, False, run, 0, left, [], exclude=a + i + 1)
    else:
        nl, nr, left, right = _visible_context(x[0], i, K)
        want = _brute_probs([seq], K, 2.0, False, nl, nr, left, right, exclude=a + i)
    assert torch.allclose(got.double(), torch.from_numpy(want), atol=1e-5)


def test_auto_resolves_by_data_and_a_prior_without_a_genome_is_one_clear_error():
    """`ngram_context: auto` is 8 on a genome with one base per token and off otherwise (saved resolved in the
    init kwargs); an explicit prior on data that cannot be counted fails before training, naming the key."""
    from omegaconf import OmegaConf

    from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
    from seqdiff.train import NGRAM_AUTO_CONTEXT, build_backbone, fit_ngram_prior

    class Genome:
        def split_codes(self, split):
            return [np.array([0, 1, 2, 3, 3, 2, 1, 0, 4, 0, 1] * 20, dtype=np.uint8)]

    cfg = OmegaConf.create({"_target_": "seqdiff.backbones.Transformer", "d_model": 32, "n_layers": 1,
                            "n_heads": 2, "d_cond": 32, "ngram_context": "auto"})
    char = NucleotideTokenizer()
    m, init = build_backbone(cfg, char, 64, Genome())
    assert init["ngram_context"] == NGRAM_AUTO_CONTEXT and m.ngram.max_context == NGRAM_AUTO_CONTEXT
    fit_ngram_prior(m, char, Genome(), resumed=False)
    assert bool(m.ngram.fitted) and m.ngram.counts.sum() > 0
    for tok, dm in [(char, None), (KmerTokenizer(3), Genome())]:
        m, init = build_backbone(cfg, tok, 64, dm)
        assert init["ngram_context"] is None and m.ngram is None
    explicit = OmegaConf.merge(cfg, {"ngram_context": 4})
    m, _ = build_backbone(explicit, char, 64, None)
    with pytest.raises(ValueError, match="model.ngram_context"):
        fit_ngram_prior(m, char, object(), resumed=False)

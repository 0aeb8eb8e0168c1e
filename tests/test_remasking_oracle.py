"""The Markov oracle is an exact denoiser; with it, confidence-ordered decoding collapses DNA and the default
(random) remasking sampler does not (the collapse is the sampler's, not the model's)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from seqdiff.benchmarks.benchmark_remasking import kmer_entropy
from seqdiff.dna import metrics as ev
from seqdiff.dna.markov_oracle import MarkovOracle
from seqdiff.dna.spec import Design
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.sampling import AncestralSampler, sample
from seqdiff.sampling.remasking import RemaskingSampler

from helpers import CHR20

TOK = NucleotideTokenizer()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_oracle_posterior_marginals_equal_brute_force():
    rng = np.random.default_rng(0)
    k, S, L = 2, 16, 6
    trans, init = rng.dirichlet(np.ones(4), size=S), rng.dirichlet(np.ones(S))
    oracle = MarkovOracle(k, trans, init, TOK.vocab_size, L)
    seqs = np.array(list(itertools.product(range(4), repeat=L)))
    states = seqs[:, 0] * 4 + seqs[:, 1]
    p = init[states]
    for i in range(k, L):
        p = p * trans[states, seqs[:, i]]
        states = (states * 4 + seqs[:, i]) % S
    M = TOK.mask_id
    x = torch.tensor([[M, 2, M, M, 0, M], [1, M, M, 3, M, M], [M] * L, [4, 1, 2, M, 3, 0]])  # 4 = N: unobserved
    probs = oracle(x).double().softmax(-1)[..., :4].numpy()
    for b in range(len(x)):
        keep = np.ones(len(seqs), bool)
        for i in range(L):
            if x[b, i] < 4:
                keep &= seqs[:, i] == int(x[b, i])
        w = p * keep / (p * keep).sum()
        marg = np.stack([np.bincount(seqs[:, i], weights=w, minlength=4) for i in range(L)])
        np.testing.assert_allclose(probs[b], marg, atol=1e-6)  # float32 logits out


def test_confidence_ordering_collapses_dna_and_random_remasking_does_not():
    from Bio import SeqIO

    seq = str(next(SeqIO.parse(CHR20, "fasta")).seq)
    L = 128
    oracle = MarkovOracle.fit([seq], 3, TOK.vocab_size, L)
    cons = Design(L).compile().constraints(TOK)

    def stats(sampler) -> tuple[float, float]:
        """(mean GC, mean per-sequence 3-mer entropy in bits) of 24 samples."""
        out = sample(oracle, TOK.mask_id, 24, L, sampler, constraints=cons, generator=torch.Generator().manual_seed(0),
                     cache=False)
        seqs = [TOK.decode(x) for x in out.tokens]
        return float(ev.gc_content(seqs).mean()), kmer_entropy(seqs)

    real_gc = float(ev.gc_content([seq.upper()]).mean())  # this slice of chr20 is GC-rich (0.51)
    for sampler in (AncestralSampler(num_steps=8), RemaskingSampler(num_steps=8, eta=0.3, t_on=1.0, t_off=0.0)):
        gc, ent = stats(sampler)  # the default remasking sampler is random: no drift
        assert abs(gc - real_gc) < 0.06 and ent > 5.0
    gc, ent = stats(RemaskingSampler(num_steps=8, eta=0.0, unmask="confidence"))
    # LLaDA ordering drifts towards the locally commonest bases (here G/C) and low-complexity runs
    assert abs(gc - real_gc) > 0.1 and ent < 4.5, (gc, ent)

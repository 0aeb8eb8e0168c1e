"""Design evaluation on real DNA (tests/fixtures/chr20_300kb.fa): k-mer JS, GC, motif hits, memorisation, shuffles."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.dna import metrics as ev
from seqdiff.dna.spec import Design, load_jaspar_motif, reverse_complement

FIXTURE = Path(__file__).parent / "fixtures" / "chr20_300kb.fa"


@pytest.fixture(scope="module")
def chr20():
    return {r.id: str(r.seq) for r in SeqIO.parse(FIXTURE, "fasta")}


def test_kmer_js_properties(chr20):
    a, b = chr20["chr20a"], chr20["chr20b"]
    wa, wb = [a[i : i + 1000] for i in range(0, 50_000, 1000)], [b[i : i + 1000] for i in range(0, 50_000, 1000)]
    same = ev.kmer_js(wa, wa)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())
    real = ev.kmer_js(wa, wb)
    assert real == pytest.approx(ev.kmer_js(wb, wa))  # symmetric
    assert all(0 < real[k] < 1 for k in range(1, 7)) and real[6] > real[1]  # finite-sample floor grows with k
    assert ev.js_divergence(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)
    poly_a = ev.kmer_js(["A" * 1000], wb)
    assert all(poly_a[k] > real[k] for k in range(1, 7))
    # spectra skip N-containing k-mers
    assert ev.kmer_spectrum(["ACNGT"], 2).sum() == pytest.approx(1.0)
    assert ev.kmer_spectrum(["ACNGT"], 2)[0 * 4 + 1] == pytest.approx(0.5)  # AC and GT only


def test_gc_content():
    assert ev.gc_content(["GGCC", "ATAT", "ACGN"]).tolist() == [1.0, 0.0, pytest.approx(2 / 3)]


@settings(max_examples=60, deadline=None)
@given(seq=st.text(alphabet="ACGTN", min_size=0, max_size=300), seed=st.integers(0, 2**32 - 1))
def test_dinucleotide_shuffle_keeps_every_dinucleotide_count(seq, seed):
    out = ev.dinucleotide_shuffle(seq, np.random.default_rng(seed))
    assert len(out) == len(seq) and Counter(out) == Counter(seq)
    assert Counter(zip(out, out[1:], strict=False)) == Counter(zip(seq, seq[1:], strict=False))
    if seq:
        assert out[0] == seq[0] and out[-1] == seq[-1]


def test_dinucleotide_shuffle_actually_shuffles_real_dna(chr20):
    s = chr20["chr20a"][:2000]
    out = ev.dinucleotide_shuffle(s, np.random.default_rng(0))
    assert np.mean([x == y for x, y in zip(s, out, strict=True)]) < 0.5


def test_shuffled_baseline_with_constraints_is_a_valid_design(chr20):
    real = [chr20["chr20b"][i : i + 120] for i in range(0, 1200, 120)]
    compiled = Design(120).flanks("ACGTACGT", "TTTT").template("RYSW", 50).motif("MA0108.2", 80, "-").compile()
    base = ev.shuffled_baseline(real, np.random.default_rng(1), compiled)
    assert ev.satisfaction_rate(base, compiled) == 1.0
    assert ev.satisfaction_rate(real, compiled) == 0.0


def test_nearest_neighbour_identity_flags_copies_not_fresh_dna(chr20):
    train = [chr20["chr20a"]]
    held_out = [chr20["chr20b"][i : i + 500] for i in (0, 40_000, 80_000)]
    copy = chr20["chr20a"][100_000:100_500]
    hit = np.random.default_rng(0).permutation(500)[:50]  # 10% of positions mutated
    mutated = "".join("ACGT"[("ACGT".index(c) + 1) % 4] if i in hit else c for i, c in enumerate(copy))
    nn = ev.nearest_neighbour_identity(held_out + [copy, reverse_complement(copy), mutated, "A" * 500 + "CG"], train)
    assert nn[3] == 1.0 and nn[4] == 1.0  # exact copy on either strand
    assert nn[5] == pytest.approx(0.9, abs=0.01)  # 10% of bases changed
    assert all(np.isnan(x) or x < 0.8 for x in nn[:3])  # unrelated held-out DNA
    with pytest.raises(ValueError):
        ev.nearest_neighbour_identity(["ACGT"], train, k=40)


def test_motif_hits_skip_the_fixed_span(chr20):
    m = load_jaspar_motif("MA0108.2")
    bg = chr20["chr20b"][:300]
    compiled = Design(300).motif("MA0108.2", 150).compile()
    seq = bg[:150] + compiled.motifs[0].sequence + bg[165:]
    with_motif = ev.motif_hits([seq], m)[0]
    outside = ev.motif_hits([seq], m, exclude=compiled.constrained)[0]
    assert with_motif >= 1 + outside  # the placed consensus is a hit, but not counted outside the span
    assert ev.motif_hits([reverse_complement(seq)], m)[0] == with_motif  # both strands are scanned


def test_real_windows_are_n_free_and_summarize_runs(chr20):
    rng = np.random.default_rng(0)
    arr = np.frombuffer(("N" * 500 + chr20["chr20b"][:3000]).encode(), dtype=np.uint8)
    w = ev.real_windows([arr], 200, 5, rng)
    assert len(w) == 5 and all(len(x) == 200 and "N" not in x for x in w)
    with pytest.raises(ValueError):
        ev.real_windows(["N" * 1000], 200, 2, rng)
    compiled = Design(200).motif("MA0108.2", 100).compile()
    s = ev.summarize(ev.shuffled_baseline(w, rng, compiled), w, compiled, [load_jaspar_motif("MA0108.2")],
                     train=[chr20["chr20a"][:50_000]])
    assert s["satisfied"] == 1.0 and {"js_k6", "gc_mean", "nn_identity_max", "hits_per_kb_MA0108.2"} <= set(s)

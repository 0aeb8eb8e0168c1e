"""Design specs compile to Constraints; every sampler honours them (property test); bad input fails early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff.dna.spec import IUPAC, Design, design_from_options, load_jaspar_motif, reverse_complement
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.sampling import AncestralSampler, Constraints, denoise, sample
from seqdiff.sampling.remasking import RemaskingSampler

from helpers import tiny_transformer

TOK = NucleotideTokenizer()
MASK = TOK.mask_id
WINDOW = 48
# 4 kb of real GRCh37 chr20 (see tests/fixtures/caduceus/PROVENANCE.md): the source of fixed spans.
CHR20 = (Path(__file__).parent / "fixtures" / "caduceus" / "chr20_10000000_10004096.txt").read_text().strip()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


@pytest.fixture(scope="module")
def adversarial_model():
    """A random backbone whose head strongly prefers N, pad, mask and other specials: constraints must
    still keep every designed base in A C G T and in its allowed set."""
    torch.manual_seed(0)
    m = tiny_transformer(TOK.vocab_size, WINDOW).eval()
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=1.0)
        m.head.bias.zero_()
        m.head.bias[4:] = 4.0  # N and every special token
    return m


# ---- compilation ----------------------------------------------------------------------------------------------
def test_iupac_template_compiles_to_allowed_sets():
    c = Design.from_template("ACGTNRYSWKMBDHV").compile()
    allowed = c.allowed_bases()
    for i, letter in enumerate("ACGTNRYSWKMBDHV"):
        assert "".join(b for b, ok in zip("ACGT", allowed[i], strict=True) if ok) == "".join(sorted(IUPAC[letter]))
    cons = c.constraints(TOK)
    assert cons.fixed[:4].tolist() == [0, 1, 2, 3] and (cons.fixed[4:] == -1).all()
    assert not cons.allowed[:, 4:].any(), "N and special tokens are never designed"


@pytest.mark.parametrize("left,right,length", [("", "", 7), ("ACG", "", 10), ("", "TT", 5), ("A" * 50, "C" * 3, 1000),
                                               ("ACGT", "GGCC", 8)])
def test_flanks_of_any_length(left, right, length):
    c = Design(length).flanks(left, right).compile()
    assert c.template == left + "N" * (length - len(left) - len(right)) + right


@pytest.mark.parametrize("strand", ["+", "-"])
def test_motif_consensus_on_both_strands(strand):
    m = load_jaspar_motif("MA0108.2")
    c = Design(60).motif("MA0108.2", 20, strand).compile()
    want = str(m.consensus) if strand == "+" else reverse_complement(str(m.consensus))
    assert c.template[20:35] == want and c.template[:20] == "N" * 20
    assert c.motifs[0].matrix_id == "MA0108.2" and c.motifs[0].sequence == want and c.motifs[0].end == 35


def test_motif_by_name_and_sampled_from_pwm_reproducibly():
    assert load_jaspar_motif("tbp").name == "TBP"
    assert load_jaspar_motif("CTCF").matrix_id.startswith("MA0139")  # vertebrate CORE, canonical profile
    spec = lambda seed: Design(40).motif("MA0108.2", 5, "-", "sample", torch.Generator().manual_seed(seed))  # noqa: E731
    a, b = spec(0).compile().motifs[0].sequence, spec(0).compile().motifs[0].sequence
    assert a == b
    draws = {spec(s).compile().motifs[0].sequence for s in range(20)}
    assert len(draws) > 1, "PWM sampling should vary with the seed"
    # zero counts are never drawn: TBP column 2 (+ strand) has C=0, so on the - strand position 15 - 1 - 2 = 12
    # (its complement) never shows G.
    assert all(d[12] != "G" for d in draws)


def test_sampled_motif_respects_other_constraints():
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        c = Design(30).template("Y" * 30).motif("MA0108.2", 5, "+", "sample", g).compile()
        assert set(c.motifs[0].sequence) <= set("CT")


def test_kmer_tokenizer_constraints():
    c = Design(12).template("ACGNNNRYNNNN").compile().constraints(KmerTokenizer(3))
    k3 = KmerTokenizer(3)
    assert c.fixed[0] == k3.encode("ACG")[0] and (c.fixed[1:] == -1).all()
    allowed = {k3.decode([i]) for i in c.allowed[2].nonzero().flatten().tolist()}
    assert allowed == {a + b + n for a in "AG" for b in "CT" for n in "ACGT"}
    with pytest.raises(ValueError, match="multiple"):
        Design(10).compile().constraints(k3)


# ---- bad input: a clear ValueError before any sampling --------------------------------------------------------
@pytest.mark.parametrize("build,match", [
    (lambda: Design(20).fix(0, "ACGT").fix(2, "TT"), "contradictory constraints at position 2"),
    (lambda: Design(20).fix(18, "ACGT"), "outside the design"),
    (lambda: Design(20).template("NNX"), "unknown IUPAC letter 'X' at position 2"),
    (lambda: Design(20).fix(0, "ANT"), "A, C, G, T only"),
    (lambda: Design(40).motif("MA9999.9", 0), "unknown JASPAR matrix ID"),
    (lambda: Design(40).motif("NO_SUCH_TF", 0), "no JASPAR motif named"),
    (lambda: Design(40).fix(22, "C").motif("MA0108.2", 20), "contradictory constraints at position 22"),
    (lambda: Design(40).template("S" * 40).motif("MA0108.2", 20), "contradictory"),
    (lambda: Design(10).motif("MA0108.2", 0), "outside the design"),
    (lambda: Design(40).motif("MA0108.2", 0, strand="x"), "strand"),
    (lambda: Design(40).motif("MA0108.2", 0, mode="best"), "mode"),
    (lambda: Design(0), "positive"),
    (lambda: design_from_options(None), "length"),
    (lambda: design_from_options(40, motif="MA0108.2"), "motif_position"),
])
def test_bad_input_raises_clear_error(build, match):
    with pytest.raises(ValueError, match=match):
        spec = build()
        spec.compile()


def test_sampled_motif_over_impossible_base_fails():
    # TBP column 2 (+ strand) has counts A=352 C=0 G=2 T=35: with pseudocount 0, C there is impossible.
    with pytest.raises(ValueError, match="zero probability"):
        Design(40).fix(22, "C").motif("MA0108.2", 20, mode="sample", generator=torch.Generator()).compile()


def test_compiled_design_checks_sequences():
    c = Design(8).template("ACGTRYNN").compile()
    assert c.satisfied("ACGTATGG") and c.violations("ACGTCTGG") == [4]
    assert c.violations("ACGTAT") == [6, 7] and not c.satisfied("ACGTATGGA")


# ---- every sampler honours every constraint (property test) ---------------------------------------------------
SAMPLERS = ["ancestral_cache", "ancestral_nocache", "remasking", "remasking_conf", "remasking_llada"]


def _sampler(name: str, steps: int):
    if name.startswith("ancestral"):
        return AncestralSampler(num_steps=steps), name == "ancestral_cache"
    order = "random" if name == "remasking" else "confidence"  # the default, and LLaDA / ReMDM-conf
    return RemaskingSampler(num_steps=steps, eta=0.0 if name.endswith("llada") else 0.5, t_on=1.0, t_off=0.0,
                            unmask=order, remask=order), True


@st.composite
def designs(draw):
    length = draw(st.integers(1, 3 * WINDOW + 7))  # > WINDOW -> semi-autoregressive
    spec = Design(length)
    start = draw(st.integers(0, len(CHR20) - length))
    truth = CHR20[start : start + length].replace("N", "A")  # a real sequence every rule agrees with
    for _ in range(draw(st.integers(0, 3))):  # fixed spans cut from the truth
        a = draw(st.integers(0, length - 1))
        b = draw(st.integers(a + 1, min(length, a + 20)))
        spec.fix(a, truth[a:b])
    if draw(st.booleans()):  # an IUPAC template consistent with the truth (each letter contains its base)
        letters = [draw(st.sampled_from(["N", b] + [k for k, v in IUPAC.items() if b in v and k != "U"]))
                   for b in truth]
        spec.template("".join(letters))
    return spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=designs(), sampler=st.sampled_from(SAMPLERS), steps=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       batch=st.integers(1, 3))
def test_every_output_satisfies_every_constraint(adversarial_model, spec, sampler, steps, seed, batch):
    compiled = spec.compile()
    cons = compiled.constraints(TOK)
    smp, cache = _sampler(sampler, steps)
    out = sample(adversarial_model, MASK, batch, compiled.length, smp, constraints=cons,
                 generator=torch.Generator().manual_seed(seed), cache=cache, stride=WINDOW // 3)
    assert out.tokens.shape == (batch, compiled.length)
    assert not (out.tokens == MASK).any()
    assert cons.satisfied(out.tokens).all()
    for row in out.tokens:
        seq = TOK.decode(row)
        assert len(seq) == compiled.length and set(seq) <= set("ACGT") and compiled.satisfied(seq)


class FrozenWatch:
    """Wraps a sampler; after every step checks that no token unmasked at the trajectory start changed."""

    def __init__(self, inner):
        self.inner, self.start, self.steps = inner, None, 0

    def timesteps(self, device=None):
        return self.inner.timesteps(device)

    def step(self, log_p_x0, xt, t, s, mask_id, generator=None):
        if t >= 1.0:
            self.start = xt.clone()
        x = self.inner.step(log_p_x0, xt, t, s, mask_id, generator)
        given = self.start != mask_id
        assert torch.equal(x[given], self.start[given]), "a fixed/context token changed"
        self.remasked = getattr(self, "remasked", 0) + int(((xt != mask_id) & (x == mask_id)).sum())
        self.steps += 1
        return x


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=designs(), seed=st.integers(0, 2**31 - 1), eta=st.floats(0.05, 1.0))
def test_remasking_never_changes_a_fixed_position(adversarial_model, spec, seed, eta):
    compiled = spec.compile()
    cons = compiled.constraints(TOK)
    watch = FrozenWatch(RemaskingSampler(num_steps=16, eta=eta, t_on=1.0, t_off=0.0))
    out = sample(adversarial_model, MASK, 2, compiled.length, watch, constraints=cons,
                 generator=torch.Generator().manual_seed(seed), stride=WINDOW // 2)
    assert cons.satisfied(out.tokens).all() and not (out.tokens == MASK).any()


def test_remasking_actually_remasks_and_respects_explicit_fixed(adversarial_model):
    L = WINDOW
    x = torch.tensor(TOK.encode(CHR20[:L])).repeat(2, 1)
    fixed = torch.zeros(L, dtype=torch.bool)
    fixed[10:20] = True
    xt = torch.where(fixed, x, torch.full_like(x, MASK))
    watch = FrozenWatch(RemaskingSampler(num_steps=32, eta=0.5, t_on=1.0, t_off=0.0, fixed=fixed))
    out = denoise(adversarial_model, watch, xt, MASK, generator=torch.Generator().manual_seed(0))
    assert watch.remasked > 0, "eta=0.5 should remask some decoded tokens"
    assert torch.equal(out.tokens[:, 10:20], x[:, 10:20]) and not (out.tokens == MASK).any()
    # a fixed position that is masked at the start is a caller error, reported clearly
    bad = RemaskingSampler(num_steps=4, fixed=Constraints(torch.where(fixed, 0, -1)))
    with pytest.raises(ValueError, match="frozen"):
        denoise(adversarial_model, bad, torch.full_like(x, MASK), MASK)


def test_remasking_is_reproducible_and_masked_fraction_follows_schedule(adversarial_model):
    smp = RemaskingSampler(num_steps=10, eta=0.2)
    a = sample(adversarial_model, MASK, 2, 40, smp, generator=torch.Generator().manual_seed(5))
    b = sample(adversarial_model, MASK, 2, 40, smp, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens, b.tokens) and a.steps == 10
    logp = torch.zeros(1, 100, TOK.vocab_size)
    logp[..., MASK] = -torch.inf  # SUBS: the mask token is never predicted
    logp = logp.log_softmax(-1)
    xt = torch.full((1, 100), MASK)
    x = smp.step(logp, xt, 1.0, 0.5, MASK, torch.Generator().manual_seed(0))
    assert abs(int((x == MASK).sum()) - 50) <= 1  # LogLinear: alpha(0.5) ~ 0.5


def test_remasking_rejects_bad_options():
    for kw in [{"num_steps": 0}, {"eta": 2.0}, {"t_on": 0.1, "t_off": 0.5}, {"temperature": 0.0}]:
        with pytest.raises(ValueError):
            RemaskingSampler(**kw)


def test_hypothesis_designs_use_real_dna():
    assert len(CHR20) == 4096 and np.mean([c in "ACGT" for c in CHR20]) > 0.9

"""Family samplers and guidance: scale 0 is unguided; constraints hold exactly under guidance (property test);
Tweedie steps with scores of a clean-token prediction equal the ancestral posterior."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff.backbones.conditional import ClassConditionalTransformer, NoisyClassifier
from seqdiff.diffusion.families import Family, MeanParameterization, ScoreParameterization, alphabet_ids
from seqdiff.dna.spec import IUPAC, Design
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.noise import LogLinearSchedule
from seqdiff.noise.processes import AbsorbingProcess, UniformProcess
from seqdiff.sampling import sample
from seqdiff.sampling.families import FamilySampler
from seqdiff.sampling.guidance import ClassifierFreeGuidance, ClassifierGuidance, geometric_mix

TOK = NucleotideTokenizer()
MASK, V, WINDOW = TOK.mask_id, TOK.vocab_size, 48
CHR20 = (Path(__file__).parent / "fixtures" / "caduceus" / "chr20_10000000_10004096.txt").read_text().strip()
PROCESSES = {"absorbing": AbsorbingProcess, "uniform": UniformProcess}
PARAMS = {"mean": MeanParameterization, "score": ScoreParameterization}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def family(process: str, param: str = "mean") -> Family:
    return Family(PROCESSES[process](LogLinearSchedule(), V, alphabet_ids(TOK), MASK), PARAMS[param]())


def _randomize_ada(m: torch.nn.Module) -> torch.nn.Module:
    """adaLN layers start at zero (labels and time would have no effect): give them random weights."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ada" in name or "label_embed" in name:
                p.normal_(0.0, 0.5)
    return m


@pytest.fixture(scope="module")
def denoiser():
    """A random class-conditional denoiser whose head strongly prefers N and the special tokens."""
    torch.manual_seed(0)
    m = ClassConditionalTransformer(V, WINDOW, num_classes=3, d_model=32, n_layers=1, n_heads=2, d_cond=32,
                                    time_conditioning=True).eval()
    _randomize_ada(m)
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=1.0)
        m.head.bias.zero_()
        m.head.bias[4:] = 4.0
    return m


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(1)
    return _randomize_ada(NoisyClassifier(V, WINDOW, num_classes=3, d_model=32, n_layers=1, n_heads=2,
                                          d_cond=32)).eval()


def _guide(kind: str, classifier, scale: float, label: int = 1, interval=None):
    if kind == "cfg":
        return ClassifierFreeGuidance(label, scale, interval)
    return ClassifierGuidance(classifier, label, scale, mode=kind.split("_")[1], interval=interval)


GUIDES = ["cfg", "classifier_taylor", "classifier_exact"]


@pytest.mark.parametrize("process", ["absorbing", "uniform"])
@pytest.mark.parametrize("kind", GUIDES)
def test_guided_sampling_at_scale_zero_equals_unguided(denoiser, classifier, process, kind):
    fam = family(process)
    cons = Design(40).flanks("ACGTA", "TTGCA").compile().constraints(TOK)
    run = lambda guide: sample(denoiser, MASK, 3, 40, FamilySampler(fam, 6, guide), constraints=cons,  # noqa: E731
                               generator=torch.Generator().manual_seed(7)).tokens
    unguided = run(None)
    assert torch.equal(run(_guide(kind, classifier, 0.0)), unguided)
    assert not torch.equal(run(_guide(kind, classifier, 4.0)), unguided), "guidance should change the draw"


@pytest.mark.parametrize("process", ["absorbing", "uniform"])
@pytest.mark.parametrize("kind", GUIDES)
def test_guidance_interval_off_every_step_is_the_unguided_or_conditional_model(denoiser, classifier, process, kind):
    """6 steps start at t = 1, 5/6, ..., 1/6. An interval holding none of them: classifier-free guidance is the
    conditional model (scale 1) and classifier guidance the unguided step; one holding some of them changes both."""
    fam = family(process)
    cons = Design(40).flanks("ACGTA", "TTGCA").compile().constraints(TOK)
    run = lambda guide: sample(denoiser, MASK, 3, 40, FamilySampler(fam, 6, guide), constraints=cons,  # noqa: E731
                               generator=torch.Generator().manual_seed(7)).tokens
    off = run(None if kind != "cfg" else _guide(kind, classifier, 1.0))
    assert torch.equal(run(_guide(kind, classifier, 4.0, interval=(0.0, 0.1))), off)
    assert not torch.equal(run(_guide(kind, classifier, 4.0, interval=(0.5, 1.0))), off)
    assert torch.equal(run(_guide(kind, classifier, 4.0, interval=(0.0, 1.0))), run(_guide(kind, classifier, 4.0)))


@pytest.mark.parametrize("bad", [(0.6, 0.4), (-0.1, 1.0), (0.0, 1.5), (0.5,), "x"])
def test_guidance_interval_rejects_bad_bounds(bad):
    with pytest.raises(ValueError, match="guidance interval"):
        ClassifierFreeGuidance(0, 2.0, bad)


def test_geometric_mix_endpoints_and_support():
    g = torch.Generator().manual_seed(0)
    log_u = torch.randn(2, 3, 5, generator=g).log_softmax(-1)
    log_c = torch.randn(2, 3, 5, generator=g).log_softmax(-1)
    log_u[..., 0] = log_c[..., 0] = -torch.inf  # an impossible state stays impossible at any scale
    assert torch.equal(geometric_mix(log_c, log_u, 0.0), log_u)
    assert torch.equal(geometric_mix(log_c, log_u, 1.0), log_c)
    mixed = geometric_mix(log_c, log_u, 3.0)
    assert torch.all(mixed[..., 0] == -torch.inf) and torch.isfinite(mixed[..., 1:]).all()
    torch.testing.assert_close(mixed[..., 1:], 3.0 * log_c[..., 1:] - 2.0 * log_u[..., 1:])


@st.composite
def designs(draw):
    length = draw(st.integers(1, 2 * WINDOW + 7))  # > WINDOW: semi-autoregressive blocks
    spec = Design(length)
    start = draw(st.integers(0, len(CHR20) - length))
    truth = CHR20[start : start + length].replace("N", "A")
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.integers(0, length - 1))
        b = draw(st.integers(a + 1, min(length, a + 20)))
        spec.fix(a, truth[a:b])
    if draw(st.booleans()):
        letters = [draw(st.sampled_from(["N", b] + [k for k, v in IUPAC.items() if b in v and k != "U"]))
                   for b in truth]
        spec.template("".join(letters))
    return spec


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=designs(), process=st.sampled_from(["absorbing", "uniform"]), param=st.sampled_from(["mean", "score"]),
       kind=st.sampled_from([None, *GUIDES]), scale=st.floats(0.0, 8.0), steps=st.integers(1, 8),
       seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 2),
       interval=st.sampled_from([None, (0.0, 0.5), (0.5, 1.0), (0.2, 0.8)]))
def test_constraints_hold_exactly_under_guidance(denoiser, classifier, spec, process, param, kind, scale, steps,
                                                 seed, batch, interval):
    compiled = spec.compile()
    cons = compiled.constraints(TOK)
    guide = None if kind is None else _guide(kind, classifier, scale, label=seed % 3, interval=interval)
    out = sample(denoiser, MASK, batch, compiled.length, FamilySampler(family(process, param), steps, guide),
                 constraints=cons, generator=torch.Generator().manual_seed(seed), stride=WINDOW // 3)
    assert out.tokens.shape == (batch, compiled.length) and not (out.tokens == MASK).any()
    assert cons.satisfied(out.tokens).all()
    for row in out.tokens:
        seq = TOK.decode(row)
        assert set(seq) <= set("ACGT") and compiled.satisfied(seq)


@pytest.mark.parametrize("process", ["absorbing", "uniform"])
def test_tweedie_with_the_scores_of_a_clean_prediction_is_the_posterior(process):
    """SEDD's Tweedie step, fed the ratios a clean-token distribution implies, is the ancestral posterior."""
    proc = PROCESSES[process](LogLinearSchedule(), V, alphabet_ids(TOK), MASK)
    g = torch.Generator().manual_seed(0)
    xt = torch.randint(0, 5, (2, 7), generator=g)
    if process == "absorbing":
        xt[:, ::2] = MASK
    logits = torch.randn(2, 7, V, generator=g, dtype=torch.float64)
    log_p = proc.clean_log_probs(logits, xt)
    for t, s in [(1.0, 0.8), (0.6, 0.3), (0.2, 0.0)]:
        a_t = float(proc.alpha(torch.tensor(t, dtype=torch.float64)))
        if process == "absorbing":  # s_y = alpha/(1-alpha) p(y) at masked positions
            log_s = log_p + torch.log(torch.tensor(a_t / (1 - a_t), dtype=torch.float64))
        else:  # s_y = xbar_theta_y / xbar_theta_z
            xbar = proc.N * a_t * log_p.exp() + (1 - a_t)
            log_s = (xbar / xbar.gather(-1, xt[..., None])).log().masked_fill(~proc.in_alphabet, -torch.inf)
        post = proc.posterior_log_probs(log_p, xt, t, s).exp()
        tweedie = proc.tweedie_log_probs(log_s, xt, t, s).exp()
        torch.testing.assert_close(tweedie, post, rtol=1e-9, atol=1e-12)  # float64 throughout


def test_uniform_start_draws_only_allowed_alphabet_tokens():
    proc = UniformProcess(LogLinearSchedule(), V, alphabet_ids(TOK), MASK)
    cons = Design(30).template("RRRRRYYYYY" + "N" * 20).compile().constraints(TOK)
    x = proc.start(cons.initial(64, MASK), cons.allowed, torch.Generator().manual_seed(0))
    assert cons.satisfied(x).all() and not (x == MASK).any()
    with pytest.raises(ValueError, match="allow no token"):
        allowed = torch.zeros(3, V, dtype=torch.bool)
        allowed[:, 7] = True  # only [BOS]: outside the noise alphabet
        proc.start(torch.full((1, 3), MASK), allowed)

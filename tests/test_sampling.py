import pytest
import torch

from seqdiff.sampling import AncestralSampler, Constraints, denoise, sample

from helpers import subprocess_env, tiny_transformer

MASK, V = 6, 10


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tiny_transformer(V, 64, n_layers=2).eval()
    torch.nn.init.normal_(m.head.weight, std=1.0)  # make predictions position dependent
    return m


@pytest.mark.parametrize("steps", [1, 7, 64])
@pytest.mark.parametrize("cache", [True, False])
def test_no_mask_left_and_unmasked_tokens_never_change(model, steps, cache):
    g = torch.Generator().manual_seed(steps)
    x = torch.randint(0, 4, (4, 64), generator=g)
    hole = torch.rand(4, 64, generator=g) < 0.6
    xt = torch.where(hole, torch.full_like(x, MASK), x)
    out = denoise(model, AncestralSampler(num_steps=steps), xt, MASK, generator=g, cache=cache)
    assert not (out.tokens == MASK).any()
    assert torch.equal(out.tokens[~hole], x[~hole])
    assert out.nfe <= steps


def test_cached_sampler_matches_uncached_with_fewer_calls(model):
    s = AncestralSampler(num_steps=256)
    a = sample(model, MASK, 3, 64, s, generator=torch.Generator().manual_seed(0), cache=True)
    b = sample(model, MASK, 3, 64, s, generator=torch.Generator().manual_seed(0), cache=False)
    assert torch.equal(a.tokens, b.tokens)
    assert a.nfe < b.nfe


def test_same_seed_same_samples(model):
    s = AncestralSampler(num_steps=16)
    a = sample(model, MASK, 2, 40, s, generator=torch.Generator().manual_seed(3))
    b = sample(model, MASK, 2, 40, s, generator=torch.Generator().manual_seed(3))
    c = sample(model, MASK, 2, 40, s, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_semi_autoregressive_longer_than_window_honours_constraints(model):
    L = 200  # > max_len 64
    fixed = torch.full((L,), -1)
    fixed[150:160] = 2  # G run deep inside a later block
    allowed = torch.zeros(L, V, dtype=torch.bool)
    allowed[:, :4] = True
    allowed[100:110] = False
    allowed[100:110, 1] = True  # only C
    c = Constraints(fixed, allowed)
    out = sample(model, MASK, 3, L, AncestralSampler(num_steps=8), constraints=c,
                 generator=torch.Generator().manual_seed(0), stride=24)
    assert out.tokens.shape == (3, L)
    assert not (out.tokens == MASK).any()
    assert c.satisfied(out.tokens).all()


def test_constraints_reject_contradictions():
    fixed = torch.tensor([0, -1, -1])
    allowed = torch.ones(3, V, dtype=torch.bool)
    allowed[0, 0] = False
    with pytest.raises(ValueError, match="not in the allowed alphabet"):
        Constraints(fixed, allowed)
    allowed = torch.ones(3, V, dtype=torch.bool)
    allowed[2] = False
    with pytest.raises(ValueError, match="no token is allowed"):
        Constraints(torch.full((3,), -1), allowed)
    with pytest.raises(ValueError, match="length"):
        sample(tiny_transformer(V, 8), MASK, 1, 5, AncestralSampler(num_steps=2),
               constraints=Constraints.free(4))


def test_sampling_does_not_import_lightning():
    import subprocess
    import sys

    code = "import sys, seqdiff.sampling, seqdiff.backbones; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env())
    assert out.stdout.strip() == "False"

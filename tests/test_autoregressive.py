"""KV-cached autoregressive sampling: equal to the uncached reference, and distributed as the model says."""

import pytest
import torch

from seqdiff.backbones import Transformer
from seqdiff.diffusion import ar_nll
from seqdiff.sampling import Constraints
from seqdiff.sampling.autoregressive import sample_autoregressive

V, BOS = 10, 7


@pytest.fixture(scope="module")
def ar_model():
    torch.manual_seed(0)
    m = Transformer(V, 48, d_model=32, n_layers=2, n_heads=2, causal=True).eval()
    torch.nn.init.normal_(m.head.weight, std=1.0)  # a peaked, context-dependent next-token distribution
    return m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cache_sampler_matches_uncached_token_for_token(ar_model, seed):
    a = sample_autoregressive(ar_model, BOS, 4, 48, generator=torch.Generator().manual_seed(seed), cache=True)
    b = sample_autoregressive(ar_model, BOS, 4, 48, generator=torch.Generator().manual_seed(seed), cache=False)
    assert a.tokens.shape == (4, 48) and a.nfe == 48
    assert torch.equal(a.tokens, b.tokens)
    c = sample_autoregressive(ar_model, BOS, 4, 48, generator=torch.Generator().manual_seed(seed + 10))
    assert not torch.equal(a.tokens, c.tokens)


def test_samples_follow_the_chain_rule_distribution(ar_model):
    """Empirical frequencies of 2-token sequences match exp(-ar_nll) (total variation < 0.03)."""
    n = 20_000
    out = sample_autoregressive(ar_model, BOS, n, 2, generator=torch.Generator().manual_seed(0))
    codes = out.tokens[:, 0] * V + out.tokens[:, 1]
    emp = torch.bincount(codes, minlength=V * V).double() / n
    grid = torch.cartesian_prod(torch.arange(V), torch.arange(V))  # (V*V, 2), code order
    with torch.no_grad():
        p = (-ar_nll(ar_model, grid, BOS).sum(-1)).double().exp()
    assert abs(float(p.sum()) - 1.0) < 1e-4
    assert 0.5 * float((emp - p).abs().sum()) < 0.03


def test_constraints_fix_and_restrict_tokens(ar_model):
    L = 20
    fixed = torch.full((L,), -1)
    fixed[5:8] = torch.tensor([3, 2, 1])
    allowed = torch.zeros(L, V, dtype=torch.bool)
    allowed[:, :4] = True
    c = Constraints(fixed, allowed)
    for cache in (True, False):
        out = sample_autoregressive(ar_model, BOS, 6, L, constraints=c, cache=cache,
                                    generator=torch.Generator().manual_seed(0))
        assert c.satisfied(out.tokens).all()


def test_rejects_bidirectional_model_and_too_long_requests(ar_model):
    with pytest.raises(ValueError, match="causal"):
        sample_autoregressive(Transformer(V, 16, d_model=16, n_layers=1, n_heads=2), BOS, 1, 4)
    with pytest.raises(ValueError, match="max_len"):
        sample_autoregressive(ar_model, BOS, 1, 49)

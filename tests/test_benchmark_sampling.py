"""Event-driven (first-hitting) diffusion sampling: exact for the MDLM reverse process, fewer network calls."""

import pytest
import torch

from seqdiff.noise import CosineSchedule, LinearSchedule, LogLinearSchedule
from seqdiff.sampling import AncestralSampler, Constraints, denoise, sample
from seqdiff.sampling.fast import first_hitting_denoise, first_hitting_sample, inverse_alpha, unmask_events

from helpers import tiny_transformer

MASK, V = 6, 10


class ContextDenoiser(torch.nn.Module):
    """Binary toy denoiser whose p(x0 | xt) depends on what is already unmasked: P(1) grows with the number
    of unmasked 1s, so the joint distribution depends on the unmasking order and on how many tokens unmask
    together (which is what separates grid sizes)."""

    time_conditioning = False
    max_len = 4

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t=None):
        ones = (x == 1).sum(-1, keepdim=True).float()  # (B, 1)
        logits = torch.full(x.shape + (V,), -1e9)
        logits[..., 0] = 0.0
        logits[..., 1] = 2.0 * ones - 1.0 + 0.3 * torch.arange(x.shape[1])
        return logits


def _dist(tokens):
    codes = (tokens * (2 ** torch.arange(tokens.shape[1]))).sum(-1)
    return torch.bincount(codes, minlength=2 ** tokens.shape[1]).double() / len(tokens)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule(), LinearSchedule()])
def test_inverse_alpha(schedule):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    torch.testing.assert_close(inverse_alpha(schedule, schedule.alpha(t)), t, atol=1e-9, rtol=0)


def test_event_ranks_are_consistent():
    g = torch.Generator().manual_seed(0)
    masked = torch.rand(5, 40, generator=g) < 0.7
    for K in (None, 1, 8, 1000):
        rank, times, n = unmask_events(masked, LogLinearSchedule(), K, g)
        assert torch.equal(rank >= 0, masked)
        for b in range(5):
            assert torch.equal(torch.unique(rank[b][masked[b]]), torch.arange(int(n[b])))  # no empty event
            assert (times[b, : n[b]].diff() < 0).all()  # strictly decreasing times: 1 -> 0
        if K is None:
            assert torch.equal(n, masked.sum(-1))  # continuous time: one token per event
        else:
            assert int(n.max()) <= K


@pytest.mark.parametrize("K", [1, 2, 3])
def test_grid_first_hitting_has_the_ancestral_distribution(K):
    """Same K-step grid => same joint distribution as AncestralSampler(K) (TV < 0.02 on 16 outcomes)."""
    m, n = ContextDenoiser(), 40_000
    x = torch.full((n, 4), MASK)
    anc = denoise(m, AncestralSampler(num_steps=K), x, MASK, generator=torch.Generator().manual_seed(0))
    fh = first_hitting_denoise(m, x, MASK, num_steps=K, generator=torch.Generator().manual_seed(1))
    assert 0.5 * float((_dist(anc.tokens) - _dist(fh.tokens)).abs().sum()) < 0.02
    if K == 1:  # everything unmasks at once: the same distribution for any order
        pass
    else:  # and the grid actually matters for this denoiser (the test has power)
        one = first_hitting_denoise(m, x, MASK, num_steps=1, generator=torch.Generator().manual_seed(2))
        assert 0.5 * float((_dist(one.tokens) - _dist(fh.tokens)).abs().sum()) > 0.05


def test_continuous_first_hitting_is_the_fine_grid_limit():
    m, n = ContextDenoiser(), 40_000
    x = torch.full((n, 4), MASK)
    fh = first_hitting_denoise(m, x, MASK, num_steps=None, generator=torch.Generator().manual_seed(0))
    fine = first_hitting_denoise(m, x, MASK, num_steps=4096, generator=torch.Generator().manual_seed(1))
    assert fh.nfe == 4 and fh.steps == 4 * n  # one token per call per row
    assert 0.5 * float((_dist(fine.tokens) - _dist(fh.tokens)).abs().sum()) < 0.02


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tiny_transformer(V, 64, n_layers=2).eval()
    torch.nn.init.normal_(m.head.weight, std=1.0)
    return m


def test_batch_needs_fewer_calls_than_the_synchronous_grid_loop(model):
    B, L, K = 8, 64, 256
    fh = first_hitting_sample(model, MASK, B, L, num_steps=K, generator=torch.Generator().manual_seed(0))
    anc = sample(model, MASK, B, L, AncestralSampler(num_steps=K), generator=torch.Generator().manual_seed(0))
    assert not (fh.tokens == MASK).any()
    assert fh.nfe < anc.nfe <= K


def test_constraints_and_given_tokens_are_kept(model):
    L = 64
    fixed = torch.full((L,), -1)
    fixed[10:20] = 2
    allowed = torch.zeros(L, V, dtype=torch.bool)
    allowed[:, :4] = True
    allowed[30:40] = False
    allowed[30:40, 1] = True
    c = Constraints(fixed, allowed)
    for K in (None, 4, 64):
        out = first_hitting_sample(model, MASK, 3, L, num_steps=K, constraints=c,
                                   generator=torch.Generator().manual_seed(0))
        assert c.satisfied(out.tokens).all() and not (out.tokens == MASK).any()
    x = torch.randint(0, 4, (2, L))
    hole = torch.rand(2, L) < 0.5
    out = first_hitting_denoise(model, torch.where(hole, MASK, x), MASK, num_steps=16)
    assert torch.equal(out.tokens[~hole], x[~hole]) and not (out.tokens == MASK).any()


def test_time_conditioned_backbone_gets_each_rows_time():
    seen = []

    class Spy(ContextDenoiser):
        time_conditioning = True

        def forward(self, x, t=None):
            seen.append(t.clone())
            return super().forward(x, t)

    first_hitting_denoise(Spy(), torch.full((3, 4), MASK), MASK, num_steps=None,
                          generator=torch.Generator().manual_seed(0))
    assert len(seen) == 4 and all(len(t) == 3 for t in seen)
    assert (torch.stack(seen).diff(dim=0) < 0).all() and (seen[0] <= 1).all()

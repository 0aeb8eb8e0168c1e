import math

import pytest
import torch

from seqdiff.noise import CosineSchedule, LinearSchedule, LogLinearSchedule, add_noise, sample_t

SCHEDULES = [LogLinearSchedule(1e-3), CosineSchedule(1e-3), LinearSchedule()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_alpha_monotone_and_derivative_matches_finite_difference(schedule):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    a = schedule.alpha(t)
    assert torch.all(a[1:] < a[:-1]), "alpha(t) must decrease: more masking as t grows"
    h = 1e-6
    fd = (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.dalpha(t), fd, rtol=1e-4, atol=1e-6)
    assert torch.all(schedule.loss_weight(t) > 0)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_masking_rate_follows_schedule(schedule, t):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (64, 1024), generator=g)
    tt = torch.full((64,), t)
    xt = add_noise(x0, schedule.alpha(tt), mask_id=6, generator=g)
    rate = (xt == 6).float().mean().item()
    expected = 1 - schedule.alpha(torch.tensor(t)).item()
    n = x0.numel()
    assert abs(rate - expected) < 5 * math.sqrt(expected * (1 - expected) / n) + 1e-4
    # unmasked tokens are untouched
    keep = xt != 6
    assert torch.equal(xt[keep], x0[keep])


def test_padding_is_never_masked():
    x0 = torch.full((4, 32), 5)
    maskable = torch.zeros_like(x0, dtype=torch.bool)
    xt = add_noise(x0, torch.zeros(4), mask_id=6, maskable=maskable)
    assert torch.equal(xt, x0)


def test_antithetic_timesteps_are_stratified():
    g = torch.Generator().manual_seed(1)
    t = sample_t(8, generator=g, antithetic=True, eps=1e-3)
    assert t.min() >= 1e-3 and t.max() <= 1.0
    gaps = torch.diff(torch.sort(t).values)
    torch.testing.assert_close(gaps, torch.full_like(gaps, (1 - 1e-3) / 8), rtol=1e-4, atol=1e-6)


def test_loglinear_weight_is_about_one_over_t():
    s = LogLinearSchedule(eps=0.0)
    t = torch.tensor([0.1, 0.5, 1.0])
    torch.testing.assert_close(s.loss_weight(t), 1 / t)


def test_bad_eps_is_rejected():
    with pytest.raises(ValueError, match="eps"):
        LogLinearSchedule(eps=1.5)

"""The mask-rate profile (`scripts/evaluate.py mask_rates=[...]`): bits per masked base at fixed noise levels,
whose area over the mask rate is the MDLM NELBO per token."""

from __future__ import annotations

import pytest
import torch

import seqdiff
from seqdiff.evaluate import evaluate
from seqdiff.evaluation.likelihood import evaluate_likelihood, mask_rate_profile, t_for_mask_rate
from seqdiff.noise import CosineSchedule, LogLinearSchedule

from helpers import compose


@pytest.mark.parametrize("schedule", [LogLinearSchedule(eps=1e-3), CosineSchedule()])
@pytest.mark.parametrize("rate", [0.02, 0.3, 0.5, 0.97])
def test_t_for_mask_rate_inverts_the_schedule(schedule, rate):
    t = t_for_mask_rate(schedule, rate)
    assert 1.0 - float(schedule.alpha(torch.tensor([t]))[0]) == pytest.approx(rate, abs=1e-6)


def test_profile_area_equals_the_nelbo(tiny_checkpoint, one_thread):
    """Midpoint rule over 20 mask rates vs the NELBO estimate on the same windows (both Monte Carlo)."""
    model = seqdiff.load(tiny_checkpoint)
    dm = model.datamodule(max_eval_windows=16, batch_size=8)
    dm.setup("validate")
    windows = torch.cat([b["x0"] for b in dm.val_dataloader()])
    rates = [(i + 0.5) / 20 for i in range(20)]
    prof = mask_rate_profile(model.backbone, model.tokenizer, windows.split(8), model.schedule, rates,
                             progress=False)
    assert [p["mask_rate"] for p in prof] == rates
    for p, r in zip(prof, rates, strict=True):  # the masked count follows the rate
        assert p["masked_tokens"] == pytest.approx(r * windows.numel(), rel=0.25, abs=40)
    area = sum(p["bits_per_masked_token"] for p in prof) / len(prof)
    nelbo = evaluate_likelihood(model.backbone, model.tokenizer, windows.split(8), schedule=model.schedule,
                                timestep_samples=16, progress=False)
    assert area == pytest.approx(nelbo.bits_per_token, rel=0.02)


def test_evaluate_cli_reports_the_profile(tiny_checkpoint, tmp_path, one_thread):
    cfg = compose("evaluate", [f"checkpoint={tiny_checkpoint}", "split=valid", "max_windows=8",
                               "timestep_samples=1", "mask_rates=[0.1,0.9]", f"out={tmp_path / 'e.json'}"])
    out = evaluate(cfg)
    rows = out["mask_rate_profile"]
    assert [r["mask_rate"] for r in rows] == [0.1, 0.9]
    assert all(0.5 < r["bits_per_masked_base"] < 4.0 and r["masked_tokens"] > 0 for r in rows)
    with pytest.raises(ValueError, match="mask rates"):
        mask_rate_profile(None, None, [], LogLinearSchedule(), [0.0])

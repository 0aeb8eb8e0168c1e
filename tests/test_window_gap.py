"""scripts/window_gap.py: per-window comparison of two checkpoints and the copy test."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import torch
from torch import nn

from seqdiff.benchmarks.window_gap import copy_test, gap_summary, position_bits, repeat_windows, window_gap
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.noise import LogLinearSchedule

from helpers import compose


class HalfCopier(nn.Module):
    """A denoiser that predicts token i >= L/2 as the token L/2 earlier when that one is visible, else uniform."""

    def __init__(self, tok, L: int):
        super().__init__()
        self.tok, self.L = tok, L

    def forward(self, x, t=None):
        B, L = x.shape
        logits = torch.zeros(B, L, self.tok.vocab_size)
        logits[..., 4:] = -1e4  # only A, C, G, T
        src = x[:, : L // 2]
        visible = src < 4
        idx = torch.where(visible, src, torch.zeros_like(src))
        bonus = torch.zeros(B, L // 2, self.tok.vocab_size).scatter(-1, idx.unsqueeze(-1), 20.0)
        logits[:, L // 2 :] += bonus * visible.unsqueeze(-1)
        return logits


def test_copy_test_tells_a_copying_model_from_fresh_sequence():
    tok = NucleotideTokenizer()
    model = SimpleNamespace(objective="mdlm", backbone=HalfCopier(tok, 64), tokenizer=tok,
                            schedule=LogLinearSchedule(), mask_id=tok.mask_id)
    windows = torch.randint(0, 4, (6, 64), generator=torch.Generator().manual_seed(0))
    out = copy_test(model, windows, mask_rate=0.3, draws=2, seed=0)
    assert out["plain"] > 1.0  # fresh halves: copying the first half is wrong 3 times in 4
    assert out["repeat"] < 0.01  # first half unmasked, so every masked copy is predicted
    rep = repeat_windows(windows)
    assert torch.equal(rep[:, :32], rep[:, 32:]) and torch.equal(rep[:, :32], windows[:, :32])


def test_position_bits_masks_only_where_scored():
    tok = NucleotideTokenizer()
    model = SimpleNamespace(objective="mdlm", backbone=HalfCopier(tok, 16), tokenizer=tok,
                            schedule=LogLinearSchedule(), mask_id=tok.mask_id)
    windows = torch.randint(0, 4, (4, 16), generator=torch.Generator().manual_seed(1))
    scored = torch.zeros_like(windows, dtype=torch.bool)
    scored[:, 8:] = True
    bits, counts = position_bits(model, windows, 0.9, draws=3, seed=0, scored=scored)
    assert counts[:, :8].sum() == 0 and counts[:, 8:].sum() > 0
    assert (bits[counts == 0] == 0).all()


def test_gap_summary_share_and_quantiles():
    a = torch.full((10,), 2.0)
    b = a.clone()
    b[0] += 1.0  # one window carries the whole gap
    s = gap_summary(a, b, top_frac=0.1)
    assert s["windows_b_worse"] == 1 and math.isclose(s["top_share_of_gap"], 1.0)
    assert math.isclose(s["mean_gap"], 0.1) and s["gap_quantiles"]["q50"] == 0.0


def test_window_gap_end_to_end_same_checkpoint_has_zero_gap(tiny_checkpoint, tmp_path):
    cfg = compose("window_gap", [f"checkpoints=[{tiny_checkpoint},{tiny_checkpoint}]", "max_windows=8",
                                 "batch_size=4", f"out={tmp_path / 'gap'}", "show=2", "split=test"])
    out = window_gap(cfg)
    assert abs(out["gap"]["mean_gap"]) < 1e-9  # the same model on the same masks
    assert math.isclose(out["models"][0]["bits_per_base"], out["models"][1]["bits_per_base"], rel_tol=1e-9)
    assert 1.0 < out["models"][0]["bits_per_base"] < 4.0
    saved = json.loads((tmp_path / "gap.json").read_text())
    assert len(saved["per_window"][0]) == 8
    assert "copy test" in (tmp_path / "gap.md").read_text()

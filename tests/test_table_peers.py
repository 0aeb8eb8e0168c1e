"""Table peers and SDMetrics: CTGAN/TVAE under a budget, scored beside seqdiff by the same code.

The SDMetrics and ctgan parts need `pip install 'seqdiff[peers]'` (pandas < 3) and are skipped without it."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from seqdiff.tables import metrics as T
from seqdiff.tables import sdmetrics_bridge as sdm
from seqdiff.tables.data import read_table
from seqdiff.tables.table_peers import _Deadline, from_peer_frame, to_peer_frame

from helpers import FIXTURES, compose, run_script

needs_sdmetrics = pytest.mark.skipif(not sdm.available(), reason="SDMetrics not installed (seqdiff[peers])")
try:
    import ctgan  # noqa: F401

    HAVE_CTGAN = True
except ImportError:
    HAVE_CTGAN = False
needs_ctgan = pytest.mark.skipif(not HAVE_CTGAN, reason="ctgan not installed (seqdiff[peers])")


@pytest.fixture(scope="module")
def adult():
    return read_table(FIXTURES / "adult_train_600.csv")


def test_peer_frame_round_trip_keeps_missing_and_integers(adult):
    real, kinds = adult
    real = real.copy()
    real.loc[real.index[:7], "hours-per-week"] = np.nan  # a numeric column with missing values
    frame, discrete = to_peer_frame(real, kinds)
    assert not frame.isna().any().any()  # CTGAN/TVAE refuse NaN
    assert "hours-per-week::missing" in discrete and "workclass" in discrete and "age" not in discrete
    back = from_peer_frame(frame, kinds)
    pd.testing.assert_frame_equal(back[list(kinds)].astype(str), real[list(kinds)].astype(str))


def test_deadline_stops_between_epochs_but_runs_at_least_one():
    start = time.perf_counter()
    assert list(_Deadline(range(5), start, None)) == [0, 1, 2, 3, 4]
    spent = _Deadline(range(5), start - 100.0, 1.0)  # budget already spent: still one epoch, then stop
    assert list(spent) == [0] and spent.epochs == 1


@needs_sdmetrics
def test_sdmetrics_scores_agree_with_ours_and_rank_baselines(adult):
    real, kinds = adult
    half_a, half_b = real.iloc[:300], real.iloc[300:]
    same = sdm.sdmetrics_report(real, real, kinds, detection=False)
    assert same["column_shapes"] == pytest.approx(1.0) and same["column_pair_trends"] == pytest.approx(1.0)
    held_out = sdm.sdmetrics_report(half_a, half_b, kinds)
    indep = sdm.sdmetrics_report(half_a, T.independent_columns(half_a, 300, 0), kinds)
    # Independent columns keep marginals but break dependences: trends drop well below a real sample's.
    assert indep["column_pair_trends"] < held_out["column_pair_trends"] - 0.05
    # Same definition (KS / TV complement averaged over columns) as seqdiff's own column shapes.
    ours = np.mean(list(T.column_shapes(half_a, half_b, kinds).values()))
    assert held_out["column_shapes"] == pytest.approx(ours, abs=0.01)
    assert held_out["shape_error_pct"] == pytest.approx(100 * (1 - held_out["column_shapes"]))


@needs_ctgan
@pytest.mark.parametrize("peer", ["ctgan", "tvae"])
def test_fit_peer_respects_epochs_and_budget(adult, peer):
    from seqdiff.tables.table_peers import fit_peer, sample_peer

    real, kinds = adult
    _, info = fit_peer(peer, real, kinds, epochs=2, seed=0)
    assert info["epochs"] == 2
    model, info = fit_peer(peer, real, kinds, epochs=50, budget_seconds=0.0, seed=0)
    assert info["epochs"] == 1  # the budget was spent before the second epoch
    rows = sample_peer(model, 40, kinds, seed=0)
    assert list(rows.columns) == list(kinds) and len(rows) == 40
    assert (rows["age"].dropna() % 1 == 0).all() and rows["income"].dropna().isin(real["income"].unique()).all()


@pytest.mark.slow  # trains a table model, fits two peers, runs the full evaluation (~1-2 min)
@needs_ctgan
@needs_sdmetrics
def test_peers_cli_then_evaluate_table_scores_them_beside_seqdiff(tmp_path):
    from seqdiff.train import train

    run = tmp_path / "adult_run"
    cfg = compose("train", [
        "experiment=adult", "data=table", f"data.path={FIXTURES / 'adult_train_600.csv'}",
        f"data.test_path={FIXTURES / 'adult_test_200.csv'}", "data.target=income", "data.batch_size=64",
        "model.d_model=32", "model.n_layers=1", "model.d_cond=32", "trainer.max_steps=4",
        "trainer.val_check_interval=4", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=4", "~logger",
    ], run_dir=run)
    train(cfg)
    ckpt = run / "checkpoints" / "last.ckpt"
    r = run_script("table_peers.py", f"checkpoint={ckpt}", f"out_dir={tmp_path / 'peers'}", "epochs=1",
                   "num_rows=120", "budget_seconds=from_run")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "peers" / "peers.json").read_text())
    assert summary["peers"]["ctgan"]["epochs"] == 1 and summary["peers"]["tvae"]["budget_seconds"] > 0
    r = run_script("evaluate_table.py", f"checkpoint={ckpt}", "num_rows=120", "impute_rows=30", "num_draws=2",
                   "steps=8", f"out={tmp_path / 'e.json'}",
                   f"peers={{CTGAN: {tmp_path / 'peers' / 'ctgan.csv'}, TVAE: {tmp_path / 'peers' / 'tvae.csv'}}}")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert {"seqdiff", "CTGAN", "TVAE"} <= set(result["fidelity"])
    for scores in result["fidelity"].values():  # every row set: our metrics and SDMetrics', same real split
        assert 0 < scores["column_shapes"] <= 1 and 0 < scores["sdmetrics"]["column_pair_trends"] <= 1
    md = (tmp_path / "e.md").read_text()
    assert "| CTGAN |" in md and "scored by SDMetrics" in md

"""scripts/results_dna.py's engine on the tiny run: the Markov order is the one best on validation, every run is
scored on the same test windows, and the JSON, table and learning-curve figure are written."""

from __future__ import annotations

import json

from seqdiff.dna.results_dna import plot_learning_curves, results_dna

from helpers import compose


def test_results_dna_tables_and_curves(tiny_checkpoint, tmp_path, one_thread):
    run = tiny_checkpoint.parent.parent
    out = tmp_path / "res.json"
    cfg = compose("results_dna", [f"runs=[{run}]", "markov_orders=[0,1,2,3]", "max_eval_windows=8",
                                  "timestep_samples=1", f"out={out}"])
    res = results_dna(cfg)
    scores = res["markov"]["valid_bits_per_base_by_order"]
    assert res["markov"]["order"] == min(scores, key=scores.get)
    assert 1.0 < res["markov"]["test_bits_per_base"] < 2.4  # real DNA: well under 2 bits + the N symbol
    (row,) = res["runs"]
    assert row["steps"] == 13 and 1.0 < row["test_bits_per_base"] < 4.0
    assert [p["step"] for p in row["curve"]] == [6, 12]  # the validations of the tiny run
    assert json.loads(out.read_text())["test_windows"] == res["test_windows"] == 8
    assert f"Markov order {res['markov']['order']}" in out.with_suffix(".md").read_text()
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # the figure can be redrawn from the JSON alone (its order keys are strings there)
    redrawn = tmp_path / "again.png"
    plot_learning_curves(json.loads(out.read_text()), redrawn)
    assert redrawn.read_bytes().startswith(b"\x89PNG")

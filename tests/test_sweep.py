"""The recipe sweep end to end on the committed chr20 fixture with a two-point grid."""

import json

from helpers import ROOT, compose


def test_sweep_two_points_end_to_end(tmp_path):
    from seqdiff.benchmarks.sweep import sweep

    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"lr_low": 2.0, "lr_high": 1.5}))  # steps/s as if measured on an idle machine
    cfg = compose("sweep", ["sweep=tiny", f"out={tmp_path / 'out'}", f"throughput_file={rates}", "eval_windows=8",
                            "timestep_samples=1", "markov_orders=[1,2]"])
    res = sweep(cfg)
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["lr_low"]["steps"] == 8 and rows["lr_high"]["steps"] == 6  # budget 4 s x rate
    for r in rows.values():
        assert 1.0 < r["bits_per_base"] < 4.0 and r["curve"] and "val/bpb" in r["curve"][-1]
        assert r["curve"][-1]["step"] == r["steps"]
    assert res["markov"]["order"] in (1, 2)
    out = tmp_path / "out"
    assert (out / "curves.png").stat().st_size > 1000
    assert "| Markov order" in (out / "sweep.md").read_text()
    # resumable: a second call reuses runs and scores (no training: metrics files untouched)
    before = (out / "runs" / "lr_low" / "metrics.json").stat().st_mtime_ns
    sweep(cfg)
    assert (out / "runs" / "lr_low" / "metrics.json").stat().st_mtime_ns == before


def test_profile_step_tables_on_the_fixture(tmp_path):
    from seqdiff.benchmarks.profile_step import profile_step

    tiny = ["data.genome=null", "data.fasta=tests/fixtures/chr20_300kb.fa", "data.gap=1000", "data.window=128",
            "data.batch_size=4", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_cond=32"]
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):  # profile_step composes train.yaml
        cfg = hydra_compose("profile_step", [f"overrides={tiny}".replace("'", '"'), "warmup=1", "steps=1",
                                             "profiled_steps=1", "top=3", "peak_seconds=0.2",
                                             f"out={tmp_path / 'prof'}"])
        res = profile_step(cfg)
    assert set(res["precisions"]) == {"fp32", "bf16"} and res["tokens_per_step"] == 4 * 128
    for p in res["precisions"].values():
        assert p["tokens_per_second"] > 0 and len(p["top_ops"]) == 3
        assert 0 < p["mfu_best_peak"] <= p["mfu_own_peak"]  # the best peak is at least the precision's own
    assert res["model_flops_per_step"] > 6 * 4 * 128 * 32 * 32  # at least the blocks' weight matmuls
    assert "| operator |" in (tmp_path / "prof.md").read_text()

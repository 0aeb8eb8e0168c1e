"""Benchmark configs compose, every sampler runner resolves, goals/report render; end-to-end run is slow."""

import json
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from seqdiff.benchmarks.report import goals, render

from helpers import ROOT, TINY_MODEL_OVERRIDES, compose, subprocess_env


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profiles_compose_and_runners_resolve(profile):
    cfg = compose("benchmark", [f"benchmark={profile}"])
    b = cfg.benchmark
    assert b.name == profile
    assert any(o.startswith("trainer.max_steps=") for o in b.train.common)
    assert b.train.mdlm == ["model=transformer"] and b.train.ar == ["model=transformer_ar"]
    assert b.quality.goal_k in b.quality.ks
    names = [s.name for s in b.generation.samplers]
    assert "AR + KV cache" in names and "first-hitting" in names
    for spec in b.generation.samplers:
        assert callable(instantiate(spec.runner, _partial_=True))


def _row(name, steps, seconds16, js4):
    return {"name": name, "steps": steps, "js": {"2": 0.01, "4": js4, "6": 0.1}, "ar_bits_per_base": 1.9,
            "timings": [{"batch": 1, "seconds": 1.0, "cpu_seconds": 1.0, "nfe": 8, "tokens_per_second": 1024.0,
                         "tokens_per_cpu_second": 1024.0},
                        {"batch": 16, "seconds": 2 * seconds16, "cpu_seconds": seconds16, "nfe": 8,
                         "tokens_per_second": 8192 / seconds16, "tokens_per_cpu_second": 16384 / seconds16}]}


def fake_results():
    model = {"step_seconds_median": 1.0, "step_cpu_seconds_median": 0.9, "tokens_per_second": 8192.0,
             "tokens_per_cpu_second": 9000.0, "fit_tokens_per_second": 7000.0, "fit_seconds": 100.0,
             "train_flops_per_step": 1e10, "model_flops_per_cpu_second": 1.1e10, "mfu": 0.25, "mfu_wall": 0.2,
             "mfu_fit": 0.2}
    lik = {"bits_per_base": 1.95, "stderr": 0.01, "timestep_samples": 8}
    return {
        "profile": "quick", "started": "now", "seconds": 60.0,
        "machine": {"cpu_count": 2, "torch": "2", "torch_threads": 1},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4, "parameters": 1e6},
        "budget": {"steps": 10, "batch": 8, "window_tokens": 1024, "train_bases": 81920},
        "likelihood": {"windows": 4, "window_bases": 1024, "mdlm": lik, "ar": dict(lik, bits_per_base=1.9),
                       "markov": {"order": 5, "bits_per_base": 1.97, "stderr": 0.01, "train_bases": 81920},
                       "mdlm_over_ar": 1.95 / 1.9 - 1},
        "generation": {"length": 1024, "batch_sizes": [1, 16], "dtype": "float32", "ks": [2, 4, 6], "goal_k": 4,
                       "reference_windows": 8,
                       "rows": [_row("ancestral", 16, 5.0, 0.02), _row("first-hitting", 16, 3.0, 0.05),
                                _row("AR + KV cache", None, 4.0, 0.03)],
                       "floor": {"name": "held-out DNA (floor)", "js": {"2": 0.0, "4": 0.01, "6": 0.05},
                                 "ar_bits_per_base": 1.9}},
        "training": {"matmul": {"dtype": "float32", "size": 1024, "flops_per_second": 4e10,
                                "flops_per_cpu_second": 4.2e10},
                     "model_shape_gemm": [8192, 128, 512], "model_shape_gemm_flops_per_second": 3e10,
                     "model_shape_gemm_flops_per_cpu_second": 3.1e10,
                     "precision": "32-true", "models": {"mdlm": model, "ar": model}},
    }


def test_goals_pick_the_fastest_sampler_at_equal_quality():
    res = fake_results()
    g = goals(res)
    assert not g["likelihood_within_2pct"]["met"]  # +2.6%
    sp = g["diffusion_as_fast_as_ar_kv"]
    assert sp["best_at_equal_js"]["name"] == "ancestral" and not sp["met"]  # 5 s > AR's 4 s at JS <= 0.03
    assert sp["fastest_diffusion"]["name"] == "first-hitting"
    assert not g["mfu_at_least_40pct_of_ceiling"]["met"]  # MFU 25% of the ceiling
    res["goals"] = g
    md = render(res)
    assert "| AR + KV cache | - |" in md and "**not met**" in md and "held-out DNA (floor)" in md


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_a_tiny_profile(tmp_path):
    """scripts/benchmark.py on real chr20 windows with a 1-layer model and 128-bp generation (~1-2 min)."""
    if not (ROOT / "genomes" / "grch37_chr20" / "grch37_chr20.fa").is_file():
        pytest.skip("genome not fetched: python scripts/fetch_genome.py grch37_chr20")
    common = ",".join(f'"{o}"' for o in [
        "data.window=128", "data.batch_size=4", "data.max_eval_windows=8", "trainer.max_steps=6",
        "trainer.val_check_interval=6", "trainer.limit_val_batches=1", "run_test=false",
        "callbacks.checkpoint.every_n_train_steps=6", *TINY_MODEL_OVERRIDES, "objective.warmup_steps=2"])
    cmd = [sys.executable, "scripts/benchmark.py", f"out_dir={tmp_path}/out", f"work_dir={tmp_path}/work",
           f"benchmark.train.common=[{common}]", "benchmark.likelihood.windows=4",
           "benchmark.likelihood.timestep_samples=2", "benchmark.markov.orders=[0,1,2]",
           "benchmark.generation.length=128", "benchmark.generation.batch_sizes=[1,2]",
           "benchmark.quality.reference_windows=8", "benchmark.matmul.sizes=[128]", "benchmark.matmul.seconds=0.2",
           "benchmark.generation.samplers.2.runner.window=64", "benchmark.generation.samplers.2.runner.stride=32"]
    subprocess.run(cmd, cwd=ROOT, check=True, env=dict(subprocess_env(), HYDRA_FULL_ERROR="1"))
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(res) >= {"likelihood", "generation", "training", "goals"}
    assert res["budget"]["steps"] == 6 and res["likelihood"]["windows"] == 4
    rows = res["generation"]["rows"]
    ar = next(r for r in rows if r["name"] == "AR + KV cache")
    assert all(t["nfe"] == 128 for t in ar["timings"])
    for r in rows:
        if r["name"] == "first-hitting":
            assert all(t["nfe"] <= r["steps"] for t in r["timings"])
    assert "## Goals" in (tmp_path / "out" / "RESULTS.md").read_text()

"""`benchmark(cfg)` (scripts/benchmark.py): MDLM vs AR transformer vs Markov on held-out DNA, in one run.

Sections (each a function returning a JSON-able dict): `train_models` (both models through scripts/train.py
with identical data, steps and batch, so equal training tokens), `likelihood`, `generation`, `training`.
`benchmark(cfg)` strings them together and writes results.json + RESULTS.md (see benchmark_report.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.benchmarks.flops import (
    TransformerShape,
    measure_gemm,
    measure_matmul_throughput,
    transformer_train_flops,
)
from seqdiff.benchmarks.generation import Models
from seqdiff.checkpoint import load as load_checkpoint
from seqdiff.diffusion.objective import LN2, ar_nll
from seqdiff.dna.markov import best_markov
from seqdiff.dna.metrics import kmer_js
from seqdiff.dna.windows import EvalWindows
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import log_file, write_text

log = logging.getLogger("seqdiff.benchmark")
DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


# ------------------------------------------------------------------------------------------------ training
def train_models(cfg: DictConfig, work_dir: Path, retrain: bool, threads: int | None = None) -> dict[str, dict]:
    """Train MDLM and AR with the profile's shared overrides; reuse a finished run with the same overrides."""
    out = {}
    for name in ("mdlm", "ar"):
        run_dir = work_dir / name
        overrides = [*cfg.train.common, *cfg.train[name], f"run_dir={run_dir}", "resume=false",
                     "+callbacks.step_timer._target_=seqdiff.benchmarks.timing.StepTimer",
                     f"+callbacks.step_timer.path={run_dir}/step_times.json"]
        stamp = run_dir / "benchmark_overrides.json"
        if not retrain and stamp.is_file() and json.loads(stamp.read_text()) == overrides \
                and (run_dir / "metrics.json").is_file():
            log.info("reusing %s (same overrides; retrain=true to train again)", run_dir)
        else:
            if run_dir.exists():  # a stale or different run of this benchmark: only ever inside work_dir
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            log.info("training %s: %s", name, " ".join(overrides))
            cmd = [sys.executable, "scripts/train.py", *overrides, "++trainer.enable_progress_bar=false"]
            env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
            with log_file(run_dir / "train.log") as f:
                proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"training {name} failed; see {run_dir / 'train.log'}")
            write_text(stamp, json.dumps(overrides))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        times = json.loads((run_dir / "step_times.json").read_text())
        out[name] = {"run_dir": str(run_dir), "metrics": metrics, "overrides": overrides, **times}
    return out


# ---------------------------------------------------------------------------------------------- likelihood
def _windows(dm, split: str, n: int) -> EvalWindows:
    dm.load()
    return EvalWindows(dm.genome, dm.splits[split], dm.window_bases, dm.tokenizer, dm.max_n_frac, n, split)


def _batches(ds: EvalWindows, batch_size: int):
    for i in range(0, len(ds), batch_size):
        yield torch.stack([ds[j]["x0"] for j in range(i, min(i + batch_size, len(ds)))])


def markov_baseline(dm, test: EvalWindows, train_bases: int, orders: list[int], seed: int) -> dict:
    """Best k-th order Markov chain fitted on `train_bases` random bases of the training split (windows of
    the models' length), order chosen on the validation split; per-window bits/base on the test windows."""
    tok, rng, W = dm.tokenizer, np.random.default_rng(seed), dm.window_bases
    arrays = dm.split_arrays("train")
    sizes = np.array([len(a) for a in arrays], dtype=np.float64)
    train = []
    for _ in range(max(1, train_bases // W)):
        a = arrays[rng.choice(len(arrays), p=sizes / sizes.sum())]
        s = int(rng.integers(0, len(a) - W))
        train.append(tok.encode_bytes(np.asarray(a[s : s + W])))
    valid = [w["x0"].numpy() for w in _windows(dm, "valid", 64)]
    model, scores = best_markov(train, valid, orders, alphabet=5)
    per_window = np.array([-model.log2_probs(w["x0"].numpy()).mean() for w in test])
    return {"order": model.order, "valid_bits_by_order": {int(k): v for k, v in scores.items()},
            "train_bases": len(train) * W, "bits_per_base": float(per_window.mean()),
            "stderr": float(per_window.std(ddof=1) / math.sqrt(len(per_window)))}


def likelihood(cfg: DictConfig, mdlm, ar, dm, train_bases: int) -> dict:
    test = _windows(dm, "test", cfg.likelihood.windows)
    res = {"windows": len(test), "window_bases": dm.window_bases}
    t0 = time.perf_counter()
    res["mdlm"] = evaluate_likelihood(mdlm.backbone, mdlm.tokenizer, _batches(test, cfg.likelihood.batch_size),
                                      "mdlm", mdlm.schedule, cfg.likelihood.timestep_samples, cfg.seed,
                                      progress=False).as_dict()
    res["ar"] = evaluate_likelihood(ar.backbone, ar.tokenizer, _batches(test, cfg.likelihood.batch_size), "ar",
                                    progress=False).as_dict()
    res["markov"] = markov_baseline(dm, test, train_bases, list(cfg.markov.orders), cfg.seed)
    res["mdlm_over_ar"] = res["mdlm"]["bits_per_base"] / res["ar"]["bits_per_base"] - 1.0
    res["seconds"] = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------------------------------------- generation
def _decode(tok, tokens: torch.Tensor) -> list[str]:
    return [tok.decode(row) for row in tokens]


@torch.no_grad()
def generation(cfg: DictConfig, models: Models, tok, dm) -> dict:
    """Time every configured sampler at every step count and batch size; score pooled samples per setting."""
    g_cfg, q_cfg = cfg.generation, cfg.quality
    reference = _decode(tok, torch.stack([w["x0"] for w in _windows(dm, "test", q_cfg.reference_windows)]))
    n_pool = sum(g_cfg.batch_sizes)
    floor_set = torch.stack([w["x0"][: g_cfg.length] for w in _windows(dm, "valid", n_pool)])
    ks = list(q_cfg.ks)
    floor = {"name": "held-out DNA (floor)", "js": kmer_js(_decode(tok, floor_set), reference, ks),
             "ar_bits_per_base": _ar_bits(models, floor_set, tok)}
    rows = []
    warm = torch.Generator().manual_seed(cfg.seed)
    for spec in g_cfg.samplers:
        runner = instantiate(spec.runner, _partial_=True)
        dtype = DTYPES[spec.get("dtype") or g_cfg.dtype]
        for steps in spec.get("steps") or [None]:
            runner(models, 1, 32, steps if steps is None else min(steps, 4), warm, dtype)  # warm-up, untimed
            samples, timings = [], []
            for b in g_cfg.batch_sizes:
                g = torch.Generator().manual_seed(cfg.seed + b)
                t0, c0 = time.perf_counter(), time.process_time()
                out = runner(models, b, g_cfg.length, steps, g, dtype)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                timings.append({"batch": b, "seconds": wall, "cpu_seconds": cpu, "nfe": out.nfe,
                                "tokens_per_second": b * g_cfg.length / wall,
                                "tokens_per_cpu_second": b * g_cfg.length / cpu})
                samples.append(out.tokens)
                log.info("%s steps=%s B=%d: %.2f s (%.2f CPU s), %d calls", spec.name, steps, b, wall, cpu, out.nfe)
            samples = torch.cat(samples)
            rows.append({"name": spec.name, "steps": steps, "dtype": spec.get("dtype") or g_cfg.dtype,
                         "timings": timings,
                         "js": kmer_js(_decode(tok, samples), reference, ks),
                         "ar_bits_per_base": _ar_bits(models, samples, tok)})
    return {"length": g_cfg.length, "batch_sizes": list(g_cfg.batch_sizes), "dtype": g_cfg.dtype, "ks": ks,
            "goal_k": q_cfg.goal_k,
            "reference_windows": len(reference), "floor": floor, "rows": rows}


def _ar_bits(models: Models, x: torch.Tensor, tok) -> float:
    """Bits/base of token sequences (N, L) under the AR model (N and specials scored as the model sees them)."""
    return float(ar_nll(models.ar, x, models.bos_id).mean()) / LN2 / getattr(tok, "bases_per_token", 1)


# ------------------------------------------------------------------------------------------------ training
def training(cfg: DictConfig, trained: dict, shape: TransformerShape, batch: int, window: int,
             precision: str) -> dict:
    """Tokens/s and MFU against the matmul throughput measured in this run.

    MFU is computed on CPU time (model FLOPs per CPU-second of a training step over GEMM FLOPs per CPU-second)
    so that other jobs on a shared machine do not distort it; the wall-clock versions are kept alongside.
    """
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    # Both ceilings: the precision training used (MFU) and bf16 (what the machine offers, e.g. ~9x fp32 with AMX)
    peaks = {str(d).removeprefix("torch."): measure_matmul_throughput(d, tuple(cfg.matmul.sizes), cfg.matmul.seconds)
             for d in (torch.float32, torch.bfloat16)}
    mm = peaks[str(dtype).removeprefix("torch.")]
    bf16_peak = peaks["bfloat16"].flops_per_cpu_second
    D, r = shape.d_model, shape.mlp_ratio
    gemm_wall, gemm_cpu = measure_gemm(batch * window, D, r * D, dtype, cfg.matmul.seconds / 2)
    out = {"matmul": mm.as_dict(), "model_shape_gemm": [batch * window, D, r * D],
           "model_shape_gemm_flops_per_second": gemm_wall, "model_shape_gemm_flops_per_cpu_second": gemm_cpu,
           "precision": precision, "peaks": {k: v.as_dict() for k, v in peaks.items()}, "models": {}}
    skip = cfg.training.skip_steps
    for name, run in trained.items():
        s = dict(shape.__dict__, causal=name == "ar")
        step_flops = transformer_train_flops(TransformerShape(**s), batch, window)
        wall = float(np.median(run["step_seconds"][skip:]))
        cpu = float(np.median(run.get("step_cpu_seconds", run["step_seconds"])[skip:]))
        fit_tps = run["metrics"].get("train_tokens_per_second", float("nan"))
        out["models"][name] = {
            "step_seconds_median": wall, "step_cpu_seconds_median": cpu,
            "tokens_per_second": batch * window / wall, "tokens_per_cpu_second": batch * window / cpu,
            "fit_tokens_per_second": fit_tps, "fit_seconds": run["metrics"].get("fit_seconds"),
            "train_flops_per_step": step_flops, "model_flops_per_cpu_second": step_flops / cpu,
            "mfu": step_flops / cpu / mm.flops_per_cpu_second,
            "mfu_vs_bf16_peak": step_flops / cpu / bf16_peak,
            "mfu_wall": step_flops / wall / mm.flops_per_second,
            "mfu_fit": fit_tps * step_flops / (batch * window) / mm.flops_per_second,
        }
    return out


# ------------------------------------------------------------------------------------------------ run
def benchmark(cfg: DictConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start, load_start = time.perf_counter(), os.getloadavg()
    work_dir, out_dir = Path(cfg.work_dir), Path(cfg.out_dir)
    trained = train_models(cfg.benchmark, work_dir, cfg.retrain, cfg.threads)
    mdlm = load_checkpoint(Path(trained["mdlm"]["run_dir"]) / "checkpoints" / "last.ckpt")
    ar = load_checkpoint(Path(trained["ar"]["run_dir"]) / "checkpoints" / "last.ckpt")
    tok = mdlm.tokenizer
    dm = mdlm.datamodule()
    batch, window = int(mdlm.config["data"]["batch_size"]), int(mdlm.backbone.max_len)
    steps = int(trained["mdlm"]["metrics"]["global_step"])
    train_bases = steps * batch * dm.window_bases
    if trained["ar"]["metrics"]["global_step"] != steps:
        raise RuntimeError("MDLM and AR trained for different numbers of steps: budgets are not equal")

    bcfg = OmegaConf.create({**OmegaConf.to_container(cfg.benchmark, resolve=True), "seed": cfg.seed})
    results: dict[str, Any] = {"profile": cfg.benchmark.name, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "machine": _machine(), "budget": {"steps": steps, "batch": batch,
                               "window_tokens": window, "train_bases": train_bases,
                               "overrides": trained["mdlm"]["overrides"]}}
    shape = TransformerShape.of(mdlm.backbone)
    results["model"] = dict(shape.__dict__, parameters=sum(p.numel() for p in mdlm.backbone.parameters()))
    # what training ran in (metrics.json has precision=auto resolved); older runs only have the config
    precision = str(trained["mdlm"]["metrics"].get("precision") or mdlm.config["trainer"].get("precision", "32-true"))
    results["training"] = training(bcfg, trained, shape, batch, window, precision)
    results["likelihood"] = likelihood(bcfg, mdlm, ar, dm, train_bases)
    models = Models(mdlm.backbone, ar.backbone, tok.mask_id, tok.bos_id, mdlm.schedule)
    results["generation"] = generation(bcfg, models, tok, dm)
    results["load_average"] = {"start": load_start, "end": os.getloadavg()}
    results["seconds"] = time.perf_counter() - t_start

    from seqdiff.benchmarks.report import goals, render

    results["goals"] = goals(results)
    write_text(out_dir / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    write_text(out_dir / "RESULTS.md", render(results))
    log.info("wrote %s and %s in %.0f s", out_dir / "results.json", out_dir / "RESULTS.md", results["seconds"])
    return results


def _machine() -> dict:
    flags = ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "avx512_bf16": "avx512_bf16" in flags,
            "processor": platform.processor() or platform.machine()}

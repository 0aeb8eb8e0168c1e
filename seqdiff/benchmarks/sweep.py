"""`sweep(cfg)`: training recipes compared at a fixed wall-clock budget (scripts/sweep.py).

For each point (a named list of `scripts/train.py` overrides):
1. throughput: a short probe run measures training steps per second (LearningCurve's clock: forward, backward,
   optimiser, EMA; start-up and validation excluded). On a machine shared with other jobs, pass measured rates
   instead (`throughput_file`: JSON {point: steps_per_second}) so the budget means idle-machine seconds.
2. training for `budget_seconds * steps_per_second` steps (so the LR schedule ends with the budget), with
   `curve_points` validations on the way (held-out bits/base against training seconds, `curve.json`).
3. scoring on the same held-out windows for every point (`split`, `eval_windows`, `timestep_samples` draws of t)
   beside the best Markov chain on those windows (fitted on the training split, order chosen on them).

Everything is resumable: a finished probe, run or score is reused (delete its folder to redo it). Writes
`<out>/sweep.json`, `<out>/sweep.md` and `<out>/curves.png`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import seqdiff
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import atomic_write

log = logging.getLogger("seqdiff.sweep")
REPO = Path(__file__).resolve().parents[2]


def _train(overrides: list[str], run_dir: Path) -> dict:
    """scripts/train.py in a fresh process (a clean torch/Lightning state per point); returns its metrics."""
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *overrides, f"hydra.run.dir={run_dir}",
           "trainer.enable_progress_bar=false", "run_test=false"]
    log.info("train: %s", " ".join(cmd[2:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with atomic_write(run_dir.parent / f"{run_dir.name}.cmd") as f:
        f.write(" ".join(cmd) + "\n")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"training failed ({run_dir}):\n{r.stderr[-3000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1) + "\n")


def steps_per_second(name: str, overrides: list[str], cfg: DictConfig, out: Path) -> tuple[float, str]:
    rates = _load_json(Path(cfg.throughput_file)) if cfg.get("throughput_file") else None
    if rates and name in rates:
        return float(rates[name]), f"from {cfg.throughput_file}"
    probe_dir = out / "probe" / name
    m = _load_json(probe_dir / "metrics.json")
    if m is None or m.get("global_step") != int(cfg.probe_steps):
        m = _train([*overrides, f"trainer.max_steps={int(cfg.probe_steps)}",
                    f"trainer.val_check_interval={int(cfg.probe_steps)}", "trainer.limit_val_batches=1",
                    "resume=false"], probe_dir)
    load = os.getloadavg()[0]
    return float(m["global_step"]) / float(m["train_seconds"]), f"probe ({cfg.probe_steps} steps, load {load:.1f})"


def _markov(dm, windows: torch.Tensor, cfg: DictConfig, out: Path) -> dict:
    from seqdiff.dna.markov import best_markov

    key = f"markov_{cfg.split}_{windows.shape[0]}x{windows.shape[1]}.json"
    cached = _load_json(out / key)
    if cached:
        return cached
    t0 = time.perf_counter()
    train = dm.split_codes("train")
    model, scores = best_markov(train, [w.numpy() for w in windows], list(cfg.markov_orders), alphabet=5,
                                alpha=0.5)
    res = {"order": model.order, "bits_per_base": scores[model.order], "by_order": scores,
           "seconds": time.perf_counter() - t0}
    _write_json(out / key, res)
    return res


def _windows(model, cfg: DictConfig) -> tuple[Any, torch.Tensor]:
    data_cfg = dict(model.config["data"])
    data_cfg.update(max_eval_windows=int(cfg.eval_windows), batch_size=16)
    dm = instantiate(data_cfg, tokenizer=model.tokenizer)
    dm.setup("test" if cfg.split == "test" else "validate")
    loader = dm.test_dataloader() if cfg.split == "test" else dm.val_dataloader()
    return dm, torch.cat([b["x0"] for b in loader])


def score(run_dir: Path, cfg: DictConfig) -> dict:
    path = run_dir / f"score_{cfg.split}_{int(cfg.eval_windows)}x{int(cfg.timestep_samples)}.json"
    cached = _load_json(path)
    if cached:
        return cached
    model = seqdiff.load(run_dir / "checkpoints" / "last.ckpt")
    _, windows = _windows(model, cfg)
    res = evaluate_likelihood(model.backbone, model.tokenizer, windows.split(16), objective=model.objective,
                              schedule=model.schedule, timestep_samples=int(cfg.timestep_samples),
                              seed=int(cfg.seed), progress=False)
    out = {**res.as_dict(), "window_bases": int(windows.shape[1]) * getattr(model.tokenizer, "bases_per_token", 1)}
    _write_json(path, out)
    return out


def plot_curves(rows: list[dict], markov: float | None, path: Path, budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more than 10 points stay distinguishable
    for r in rows:
        pts = [p for p in r.get("curve", []) if "val/bpb" in p]
        if pts:
            ax.plot([p["train_seconds"] for p in pts], [p["val/bpb"] for p in pts], marker=".", label=r["name"])
    if markov is not None:
        ax.axhline(markov, color="k", ls="--", lw=1, label="best Markov chain")
    ax.set_xlabel("training seconds (idle-machine equivalent where rates were given)")
    ax.set_ylabel("held-out bits/base (validation)")
    ax.set_xlim(0, budget * 1.05)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from seqdiff.io import savefig

    savefig(fig, path)
    plt.close(fig)


def sweep(cfg: DictConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    points: dict[str, list[str]] = {k: list(v or []) for k, v in OmegaConf.to_container(cfg.points).items()}
    if not points:
        raise ValueError("sweep: `points` is empty; give name: [overrides] entries")
    base = list(cfg.base or [])
    rows = []
    for name, over in points.items():
        overrides = [*base, *over]
        rate, how = steps_per_second(name, overrides, cfg, out)
        steps = max(int(cfg.budget_seconds * rate), 1)
        run_dir = out / "runs" / name
        m = _load_json(run_dir / "metrics.json")
        if m is None or m.get("global_step") != steps:
            every = max(steps // int(cfg.curve_points), 1)
            m = _train([*overrides, f"trainer.max_steps={steps}", f"trainer.val_check_interval={every}",
                        f"callbacks.checkpoint.every_n_train_steps={every}"], run_dir)
        s = score(run_dir, cfg)
        curve = _load_json(run_dir / "curve.json") or []
        scale = (steps / rate) / m["train_seconds"] if m.get("train_seconds") else 1.0  # to idle seconds
        for p in curve:
            p["train_seconds"] = round(p["train_seconds"] * scale, 2)
        rows.append({"name": name, "overrides": over, "steps_per_second": rate, "rate_source": how,
                     "steps": steps, "parameters": m.get("parameters"), "precision": m.get("precision"),
                     "tokens": curve[-1]["tokens"] if curve else None, "measured_train_seconds": m.get("train_seconds"),
                     "bits_per_base": s["bits_per_base"], "stderr": s["stderr"], "curve": curve})
        log.info("%s: %d steps, %.4f bits/base", name, steps, s["bits_per_base"])
    markov = None
    if cfg.markov:
        first = seqdiff.load(out / "runs" / rows[0]["name"] / "checkpoints" / "last.ckpt")
        if getattr(first.tokenizer, "bases_per_token", 1) == 1:
            dm, windows = _windows(first, cfg)
            markov = _markov(dm, windows, cfg, out)
    result = {"budget_seconds": cfg.budget_seconds, "split": cfg.split, "eval_windows": cfg.eval_windows,
              "timestep_samples": cfg.timestep_samples, "base": base, "markov": markov,
              "cpu": _cpu_name(), "rows": rows}
    _write_json(out / "sweep.json", result)
    lines = [f"Budget {cfg.budget_seconds:.0f} s of training per point; {cfg.split} split, {cfg.eval_windows} "
             f"windows x {cfg.timestep_samples} t draws; base overrides: `{' '.join(base) or '-'}`; "
             f"CPU: {result['cpu']}.", "",
             "| point | overrides | params | steps/s | steps | tokens | bits/base | vs Markov |",
             "|---|---|---|---|---|---|---|---|"]
    mk = markov["bits_per_base"] if markov else None
    for r in sorted(rows, key=lambda r: r["bits_per_base"]):
        vs = f"{100 * (r['bits_per_base'] - mk) / mk:+.2f}%" if mk else "-"
        lines.append(f"| {r['name']} | `{' '.join(r['overrides']) or '-'}` | {(r['parameters'] or 0) / 1e6:.2f}M | "
                     f"{r['steps_per_second']:.2f} | {r['steps']} | {(r['tokens'] or 0) / 1e6:.1f}M | "
                     f"{r['bits_per_base']:.4f} ± {r['stderr']:.4f} | {vs} |")
    if markov:
        lines.append(f"| Markov order {markov['order']} | fitted on train, order chosen on these windows | - | - | - "
                     f"| - | {mk:.4f} | - |")
    with atomic_write(out / "sweep.md") as f:
        f.write("\n".join(lines) + "\n")
    plot_curves(rows, mk, out / "curves.png", float(cfg.budget_seconds))
    print("\n".join(lines))
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


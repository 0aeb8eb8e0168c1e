"""`benchmark_downstream(cfg)` (scripts/benchmark_downstream.py, configs/benchmark_downstream.yaml): every
method (pretrained vs scratch denoiser, k-mer LR, CNN) on one labelled-DNA task over several seeds.

    python scripts/benchmark_downstream.py task=splice checkpoint=PATH

Writes <run dir>/results.json, results.md and results.png (test accuracy per method, mean ± std with every
seed as a dot) after every method, so partial results survive. `plot_downstream` draws several tasks' results
side by side (scripts/benchmark_downstream.py summary='[DIR, ...]').
"""

from __future__ import annotations

import json
import logging
import time

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.dna.downstream.finetune import format_summary, seeds, setup
from seqdiff.dna.downstream.metrics import METRICS
from seqdiff.dna.downstream.protocol import Context, run_seeds
from seqdiff.dna.downstream.tasks import Task
from seqdiff.io import write_text

log = logging.getLogger("seqdiff.downstream")

METRIC_NAMES = {"acc": "accuracy", "mcc": "MCC", "f1": "macro-F1", "auroc": "AUROC"}


def benchmark_downstream(cfg: DictConfig) -> dict:
    """Every method in cfg.methods (a null entry is skipped) on cfg.task over cfg.seeds; JSON + markdown + PNG.
    With `summary=[DIR, ...]`: no training, the finished runs side by side in <summary_out>.{md,png}."""
    if cfg.get("summary"):
        return summarize_runs(list(cfg.summary), str(cfg.summary_out))
    task, ctx = setup(cfg, keep_checkpoints=False)
    methods = {name: mcfg for name, mcfg in cfg.methods.items() if mcfg is not None}
    if not methods:
        raise ValueError("every method is null; nothing to run")
    # fail before any training, not after an hour of baselines
    need = [name for name, mcfg in methods.items() if mcfg.get("checkpoint", "absent") is None]
    if need:
        raise ValueError(f"method(s) {', '.join(need)} need a pretrained model: pass checkpoint=PATH (or "
                         + " ".join(f"methods.{n}=null" for n in need) + ")")
    results, seconds = {}, {}
    for name, mcfg in methods.items():
        method = instantiate(mcfg, _recursive_=False)
        t0 = time.perf_counter()
        results[name] = run_seeds(method, task, seeds(cfg), ctx, name)
        seconds[name] = time.perf_counter() - t0
        log.info("%s: %s (%.0f s)", name, format_summary(results[name]), seconds[name])
        out = _write_benchmark(cfg, task, ctx, results, seconds)  # after every method: partial results survive
    print(out["table"])
    log.info("results in %s/results.{json,md}", ctx.run_dir)
    return out


def _write_benchmark(cfg: DictConfig, task: Task, ctx: Context, results: dict, seconds: dict) -> dict:
    table = markdown_table(results, seconds)
    out = {"task": task.summary(), "checkpoint": cfg.checkpoint, "seeds": seeds(cfg), "results": results,
           "seconds": seconds, "table": table, "config": OmegaConf.to_container(cfg, resolve=True)}
    write_text(ctx.run_dir / "results.json", json.dumps(out, indent=2) + "\n")
    write_text(ctx.run_dir / "results.md", table + "\n")
    plot_downstream({task.name: out}, ctx.run_dir / "results.png")
    return out


def plot_downstream(runs: dict[str, dict], path, metric: str = "acc") -> None:
    """Grouped bars: one group per task (key of `runs`, value = a results.json dict), one bar per method
    (mean ± sample std over seeds, each seed a dot), the majority-class rate of the test set as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqdiff.io import savefig

    methods: list[str] = []
    for out in runs.values():
        methods += [m for m in out["results"] if m not in methods]
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 1.6 * len(runs) * max(1, len(methods)) / 4), 4.2))
    colors = plt.cm.tab10.colors
    for j, method in enumerate(methods):
        for i, out in enumerate(runs.values()):
            r = out["results"].get(method)
            if r is None or metric not in r["mean"]:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, 100 * r["mean"][metric], width * 0.9, yerr=100 * r["std"][metric], capsize=2,
                   color=colors[j % 10], label=method)
            ax.scatter([x] * len(r["per_seed"]), [100 * s[metric] for s in r["per_seed"]], s=6, color="k", zorder=3)
    for i, out in enumerate(runs.values()):
        counts = out.get("task", {}).get("test", {}).get("class_counts")
        if counts:
            majority = 100 * max(counts.values()) / sum(counts.values())
            ax.hlines(majority, i - 0.45, i + 0.45, colors="grey", linestyles="--", lw=1)
    ax.set_xticks(range(len(runs)), list(runs))
    ax.set_ylabel({"acc": "test accuracy (%)", "f1": "test macro-F1 (%)"}.get(metric, metric))
    lows = [100 * r["mean"][metric] - 100 * r["std"][metric] for out in runs.values()
            for r in out["results"].values() if metric in r["mean"]]
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 10), 100)
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    ax.legend(seen.values(), seen.keys(), fontsize=7, ncol=min(len(seen), 5), loc="lower center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("downstream classification: mean ± std over seeds (dots), dashed = majority class", fontsize=9)
    fig.tight_layout()
    savefig(fig, path)
    plt.close(fig)


def summarize_runs(run_dirs: list[str], out: str) -> dict:
    """Several benchmark runs (one per task) -> <out>.md (one table per task) and <out>.png (grouped bars)."""
    from pathlib import Path

    runs: dict[str, dict] = {}
    for d in run_dirs:
        path = Path(d) / "results.json" if Path(d).is_dir() else Path(d)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no results.json (run scripts/benchmark_downstream.py first)")
        res = json.loads(path.read_text())
        name = res.get("task", {}).get("name") or path.parent.name
        if name in runs:  # the same task's methods split over several runs (e.g. one per core): merged
            prev = runs[name]
            if prev["seeds"] != res["seeds"]:
                raise ValueError(f"{path}: seeds {res['seeds']} differ from {prev['seeds']} of an earlier "
                                 f"{name} run; methods are only comparable over the same seeds")
            res = {**prev, **res, "results": {**prev["results"], **res["results"]},
                   "seconds": {**prev.get("seconds", {}), **res.get("seconds", {})}}
            if prev.get("checkpoint") != res.get("checkpoint"):
                res["checkpoint"] = f"{prev.get('checkpoint')}, {res.get('checkpoint')}"
            res["table"] = markdown_table(res["results"], res["seconds"])
        runs[name] = res
    md = []
    for name, res in runs.items():
        md += [f"### {name} ({', '.join(map(str, res['seeds']))} seeds; checkpoint {res.get('checkpoint')})", "",
               res["table"], ""]
    write_text(f"{out}.md", "\n".join(md))
    plot_downstream(runs, f"{out}.png")
    log.info("wrote %s.md and %s.png", out, out)
    return runs


def markdown_table(results: dict[str, dict], seconds: dict[str, float] | None = None) -> str:
    """Rows = methods, columns = test metrics as mean ± std (accuracy and F1 in %), validation accuracy (%),
    seeds and wall time."""
    head = "| method | " + " | ".join(METRIC_NAMES[k] for k in METRICS) + " | val accuracy | seeds | time (s) |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for name, r in results.items():
        cells = []
        for k in METRICS:
            if k not in r["mean"]:
                cells.append("n/a")
                continue
            scale = 100.0 if k in ("acc", "f1") else 1.0
            digits = 1 if scale == 100.0 else 3
            cells.append(f"{scale * r['mean'][k]:.{digits}f} ± {scale * r['std'][k]:.{digits}f}")
        v = r.get("val_acc")
        cells.append(f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}" if v else "n/a")
        t = f"{seconds[name]:.0f}" if seconds and name in seconds else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['n_seeds']} | {t} |")
    return "\n".join(lines)

"""`benchmark_downstream(cfg)` (scripts/benchmark_downstream.py, configs/benchmark_downstream.yaml): every
method (pretrained vs scratch denoiser, k-mer LR, CNN) on one labelled-DNA task over several seeds.

    python scripts/benchmark_downstream.py task=splice checkpoint=PATH

Writes <run dir>/results.json and results.md after every method, so partial results survive.
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
    """Every method in cfg.methods (a null entry is skipped) on cfg.task over cfg.seeds; JSON + markdown."""
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
    return out


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

"""Entry points behind scripts/finetune.py and scripts/benchmark_downstream.py (kept apart from @hydra.main
so tests call them with a composed config)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.device import resolve_device
from seqdiff.evaluation.downstream.metrics import METRICS
from seqdiff.evaluation.downstream.protocol import Context, DenoiserMethod, run_seeds
from seqdiff.evaluation.downstream.tasks import Task

log = logging.getLogger("seqdiff.downstream")

METRIC_NAMES = {"acc": "accuracy", "mcc": "MCC", "f1": "macro-F1", "auroc": "AUROC"}


def _setup(cfg: DictConfig, keep_checkpoints: bool) -> tuple[Task, Context]:
    task: Task = instantiate(cfg.task)
    if not isinstance(task, Task):
        raise TypeError(f"task config {cfg.task.get('_target_')} did not build a Task")
    log.info("task %s", json.dumps(task.summary()))
    tokenizer = instantiate(cfg.tokenizer)
    device = resolve_device(cfg.device)  # the trainer's accelerator comes from `device`, not the trainer config
    trainer = OmegaConf.merge(cfg.trainer, {"accelerator": device.type,
                                            "devices": 1 if device.index is None else [device.index]})
    ctx = Context(tokenizer=tokenizer, trainer=trainer, batch_size=cfg.batch_size, val_fraction=cfg.val_fraction,
                  long_sequences=cfg.long_sequences, run_dir=Path(cfg.run_dir), keep_checkpoints=keep_checkpoints)
    return task, ctx


def _seeds(cfg: DictConfig) -> list[int]:
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise ValueError("seeds is empty")
    return seeds


def _write(run_dir: Path, name: str, payload: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def finetune(cfg: DictConfig) -> dict:
    """Fine-tune (or linear-probe with freeze=true) one denoiser on cfg.task over cfg.seeds."""
    task, ctx = _setup(cfg, keep_checkpoints=True)
    if cfg.checkpoint:
        log.info("architecture and window come from the checkpoint; the model config is not used")
    method = DenoiserMethod(checkpoint=cfg.checkpoint, freeze=cfg.freeze, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            dropout=cfg.dropout, pool=cfg.pool, model=cfg.model, window=cfg.window)
    name = ("pretrained" if cfg.checkpoint else "scratch") + ("_probe" if cfg.freeze else "")
    t0 = time.perf_counter()
    result = run_seeds(method, task, _seeds(cfg), ctx, name)
    out = {"task": task.summary(), "method": name, "checkpoint": cfg.checkpoint, "freeze": cfg.freeze,
           "seconds": time.perf_counter() - t0, **result,
           "config": OmegaConf.to_container(cfg, resolve=True)}
    path = _write(ctx.run_dir, "results.json", out)
    log.info("%s on %s: %s (written to %s)", name, task.name, format_summary(result), path)
    return out


def benchmark(cfg: DictConfig) -> dict:
    """Every method in cfg.methods (a null entry is skipped) on cfg.task over cfg.seeds; JSON + markdown."""
    task, ctx = _setup(cfg, keep_checkpoints=False)
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
        results[name] = run_seeds(method, task, _seeds(cfg), ctx, name)
        seconds[name] = time.perf_counter() - t0
        log.info("%s: %s (%.0f s)", name, format_summary(results[name]), seconds[name])
        out = _write_benchmark(cfg, task, ctx, results, seconds)  # after every method: partial results survive
    print(out["table"])
    log.info("results in %s/results.{json,md}", ctx.run_dir)
    return out


def _write_benchmark(cfg: DictConfig, task: Task, ctx: Context, results: dict, seconds: dict) -> dict:
    table = markdown_table(results, seconds)
    out = {"task": task.summary(), "checkpoint": cfg.checkpoint, "seeds": _seeds(cfg), "results": results,
           "seconds": seconds, "table": table, "config": OmegaConf.to_container(cfg, resolve=True)}
    _write(ctx.run_dir, "results.json", out)
    (ctx.run_dir / "results.md").write_text(table + "\n")
    return out


def format_summary(result: dict) -> str:
    return ", ".join(f"{k} {result['mean'][k]:.4f} ± {result['std'][k]:.4f}" for k in METRICS if k in result["mean"])


def markdown_table(results: dict[str, dict], seconds: dict[str, float] | None = None) -> str:
    """Rows = methods, columns = metrics as mean ± std (accuracy and F1 in %), seeds and wall time."""
    head = "| method | " + " | ".join(METRIC_NAMES[k] for k in METRICS) + " | seeds | time (s) |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for name, r in results.items():
        cells = []
        for k in METRICS:
            if k not in r["mean"]:
                cells.append("n/a")
                continue
            scale = 100.0 if k in ("acc", "f1") else 1.0
            digits = 1 if scale == 100.0 else 3
            cells.append(f"{scale * r['mean'][k]:.{digits}f} ± {scale * r['std'][k]:.{digits}f}")
        t = f"{seconds[name]:.0f}" if seconds and name in seconds else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['n_seeds']} | {t} |")
    return "\n".join(lines)

"""`finetune(cfg)` (scripts/finetune.py, configs/finetune.yaml): fine-tune (or linear-probe) one denoiser on a
labelled-DNA task over several seeds; `setup` and `seeds` are shared with benchmarks/benchmark_downstream.py.

    python scripts/finetune.py task=splice checkpoint=PATH [freeze=true]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.device import resolve_device
from seqdiff.dna.downstream.metrics import METRICS
from seqdiff.dna.downstream.protocol import Context, DenoiserMethod, run_seeds
from seqdiff.dna.downstream.tasks import Task
from seqdiff.io import write_text
from seqdiff.precision import resolve_training_precision

log = logging.getLogger("seqdiff.downstream")
# configs/finetune.yaml keys passed to DenoiserMethod (benchmark_downstream.yaml interpolates the same keys)
RECIPE = ("lr", "weight_decay", "dropout", "pool", "pool_heads", "pool_width", "probe", "head_init", "warmup",
          "schedule", "layer_decay", "rc_augment", "rc_predict", "input_mask")


def setup(cfg: DictConfig, keep_checkpoints: bool) -> tuple[Task, Context]:
    """The task (cfg.task) and the protocol context (tokenizer, trainer, batch size, run directory)."""
    task: Task = instantiate(cfg.task)
    if not isinstance(task, Task):
        raise TypeError(f"task config {cfg.task.get('_target_')} did not build a Task")
    log.info("task %s", json.dumps(task.summary()))
    tokenizer = instantiate(cfg.tokenizer)
    device = resolve_device(cfg.device)  # the trainer's accelerator comes from `device`, not the trainer config
    trainer = OmegaConf.create(OmegaConf.to_container(cfg.trainer, resolve=True))  # not struct: keys are added
    trainer.accelerator, trainer.devices = device.type, 1 if device.index is None else [device.index]
    # precision=auto: bf16-mixed where this device's bf16 matmul is measured >= 1.5x fp32 (seqdiff.precision)
    trainer.precision = resolve_training_precision(trainer.get("precision", "32-true"), device.type)
    ctx = Context(tokenizer=tokenizer, trainer=trainer, batch_size=cfg.batch_size, val_fraction=cfg.val_fraction,
                  long_sequences=cfg.long_sequences, run_dir=Path(cfg.run_dir), keep_checkpoints=keep_checkpoints,
                  patience=cfg.patience)
    return task, ctx


def seeds(cfg: DictConfig) -> list[int]:
    out = [int(s) for s in cfg.seeds]
    if not out:
        raise ValueError("seeds is empty")
    return out


def finetune(cfg: DictConfig) -> dict:
    """Fine-tune (or linear-probe with freeze=true) one denoiser on cfg.task over cfg.seeds."""
    task, ctx = setup(cfg, keep_checkpoints=True)
    if cfg.checkpoint:
        log.info("architecture and window come from the checkpoint; the model config is not used")
    method = DenoiserMethod(checkpoint=cfg.checkpoint, freeze=cfg.freeze, model=cfg.model, window=cfg.window,
                            **{k: cfg[k] for k in RECIPE})
    name = ("pretrained" if cfg.checkpoint else "scratch") + ("_probe" if cfg.freeze else "")
    t0 = time.perf_counter()
    result = run_seeds(method, task, seeds(cfg), ctx, name)
    out = {"task": task.summary(), "method": name, "checkpoint": cfg.checkpoint, "freeze": cfg.freeze,
           "seconds": time.perf_counter() - t0, **result,
           "config": OmegaConf.to_container(cfg, resolve=True)}
    path = ctx.run_dir / "results.json"
    write_text(path, json.dumps(out, indent=2) + "\n")
    log.info("%s on %s: %s (written to %s)", name, task.name, format_summary(result), path)
    return out


def format_summary(result: dict) -> str:
    return ", ".join(f"{k} {result['mean'][k]:.4f} ± {result['std'][k]:.4f}" for k in METRICS if k in result["mean"])

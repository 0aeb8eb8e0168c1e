"""`train(cfg)`: build everything from a composed Hydra config, fit, test, and write metrics.

Kept apart from the `@hydra.main` wrapper in scripts/train.py so tests can call it with a composed config.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.callbacks import LearningCurve
from seqdiff.checkpoint import SAFE_GLOBALS, is_trusted, read_checkpoint
from seqdiff.io import atomic_write
from seqdiff.precision import probe, resolve_training_precision
from seqdiff.reliability import AtomicCheckpointIO, StepSeed, check_config_types

log = logging.getLogger("seqdiff.train")


NGRAM_AUTO_CONTEXT = 8  # `model.ngram_context: auto` on DNA with the character tokenizer (docs/training.md)


def build_backbone(cfg_model: Any, tokenizer: Any, max_len: int,
                   datamodule: Any = None) -> tuple[torch.nn.Module, dict]:
    """Instantiate cfg.model with the tokenizer-derived kwargs it accepts; returns (backbone, those kwargs).

    `ngram_context: auto` resolves here (and is saved resolved with the kwargs): an n-gram prior of
    NGRAM_AUTO_CONTEXT bases when the data is a genome (its training split can be counted) and the tokenizer
    is one base per token, none otherwise (tables, code, classification tasks)."""
    target = instantiate({"_target_": "hydra.utils.get_class", "path": cfg_model["_target_"]})
    params = inspect.signature(target).parameters
    init: dict[str, Any] = {"vocab_size": tokenizer.vocab_size, "max_len": max_len}
    if "ngram_context" in params and cfg_model.get("ngram_context") == "auto":
        dna = getattr(tokenizer, "bases_per_token", None) == 1 and hasattr(datamodule, "split_codes")
        init["ngram_context"] = NGRAM_AUTO_CONTEXT if dna else None
    if "complement_ids" in params and hasattr(tokenizer, "complement_ids"):
        init["complement_ids"] = [int(i) for i in tokenizer.complement_ids]
    return instantiate(cfg_model, **init), init


def init_backbone_from(backbone: torch.nn.Module, tokenizer: Any, path: str, partial: bool = False) -> int:
    """Copy the weights of the checkpoint (or save_pretrained folder) at `path` into `backbone` before training:
    its EMA weights when it has them. Tensors are matched by name and shape; the tokenizers must be equal.
    The source may have another objective or task: an AR checkpoint loads into an MDLM run (the same transformer
    with its causal flag off), a genome checkpoint into a class-conditional denoiser. `partial=True` lets this
    run's model have tensors the source lacks (e.g. label or position embeddings): they keep their fresh
    initialisation and are logged. Returns the number of tensors copied; raises CheckpointError naming the
    tensors that do not match (nothing is copied then)."""
    from seqdiff.checkpoint import CheckpointError, check_tokenizer, load

    src = load(path)
    check_tokenizer(src, tokenizer, "this run")
    theirs, ours = src.backbone.state_dict(), backbone.state_dict()
    # n-gram counts belong to the data, not the network: this run counts its own training split
    theirs = {k: v for k, v in theirs.items() if k not in ("ngram.counts", "ngram.fitted")}
    ours = {k: v for k, v in ours.items() if k not in ("ngram.counts", "ngram.fitted")}
    if "ngram_in.weight" in theirs and "ngram_in.weight" not in ours:
        log.warning("init_from=%s has an n-gram prior that this run's model lacks (model.ngram_context): its "
                    "input projection is dropped", path)
        del theirs["ngram_in.weight"]
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    shapes = [f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
              if k in theirs and theirs[k].shape != v.shape]
    if partial and not shapes and not unexpected and len(missing) < len(ours):
        log.info("init_from: %d tensors of this model are not in %s and keep their initialisation: %s",
                 len(missing), path, ", ".join(missing))
        missing = []
    if missing or unexpected or shapes:
        raise CheckpointError(f"init_from={path}: its backbone does not match this run's model "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape {shapes[:3]})")
    backbone.load_state_dict(theirs, strict=False)  # the key sets were checked above
    log.info("initialised %d backbone tensors from %s (objective %s)", len(theirs), path, src.objective)
    return len(theirs)


def fit_ngram_prior(backbone: torch.nn.Module, tokenizer: Any, datamodule: Any, resumed: bool) -> None:
    """Fill a backbone's n-gram prior (`model.ngram_context`) from the training split, unless it is already
    fitted (init_from) or the run resumes (the checkpoint holds the tables)."""
    prior = getattr(backbone, "ngram", None)
    if prior is None or resumed or bool(prior.fitted):
        return
    if getattr(tokenizer, "bases_per_token", None) != 1 or not hasattr(datamodule, "split_codes"):
        raise ValueError("model.ngram_context needs DNA data and the character tokenizer (ids 0..3 = A C G T); "
                         "set model.ngram_context=null")
    t0 = time.perf_counter()
    prior.fit(datamodule.split_codes("train"))
    log.info("n-gram prior (context %d) fitted on the training split in %.1f s", prior.max_context,
             time.perf_counter() - t0)


def build_module(cfg: DictConfig, backbone: torch.nn.Module, tokenizer: Any) -> L.LightningModule:
    target = instantiate({"_target_": "hydra.utils.get_class", "path": cfg.objective["_target_"]})
    kwargs: dict[str, Any] = {"backbone": backbone, "tokenizer": tokenizer}
    if "schedule" in inspect.signature(target).parameters:
        kwargs["schedule"] = instantiate(cfg.noise)
    return instantiate(cfg.objective, **kwargs)


def build_trainer(cfg_trainer: Any, **kwargs: Any) -> L.Trainer:
    """Instantiate cfg.trainer; `precision: auto` is resolved by measurement (seqdiff.precision)."""
    precision = resolve_training_precision(cfg_trainer.get("precision", "32-true"),
                                           str(cfg_trainer.get("accelerator", "cpu")))
    return instantiate(cfg_trainer, precision=precision, **kwargs)


def _every_n(callbacks: list) -> int:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ns = [c._every_n_train_steps for c in callbacks if isinstance(c, ModelCheckpoint) and c._every_n_train_steps]
    return ns[0] if ns else 1


def _finish_loggers(trainer: L.Trainer) -> None:
    """Close W&B runs (logger=wandb) so their file is complete when train() returns, not only at process exit,
    and a second train() in the same process starts a new run."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger) and trainer.is_global_zero:
            lg.experiment.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model; resume from `<run_dir>/checkpoints/last.ckpt` if present. Returns metrics."""
    check_config_types(cfg)  # `trainer.max_steps=abc` -> one line naming the key, before anything is built
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    tokenizer = instantiate(cfg.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    backbone, backbone_init = build_backbone(cfg.model, tokenizer, datamodule.window, datamodule)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if cfg.get("resume", True) and last.is_file() else None
    if cfg.get("init_from") and not ckpt_path:  # a resumed run has these weights (and more) in last.ckpt
        init_backbone_from(backbone, tokenizer, str(cfg.init_from), bool(cfg.get("init_from_partial", False)))
    fit_ngram_prior(backbone, tokenizer, datamodule, resumed=ckpt_path is not None)
    module = build_module(cfg, backbone, tokenizer)  # after init_from: the EMA copy starts from those weights
    module.seqdiff_config = OmegaConf.to_container(cfg, resolve=True)
    module.backbone_init = backbone_init
    n_params = sum(p.numel() for p in backbone.parameters())
    log.info("backbone %s: %.2fM parameters, window %d tokens", type(backbone).__name__, n_params / 1e6,
             datamodule.window)

    callbacks = [instantiate(c) for c in cfg.callbacks.values()] if cfg.get("callbacks") else []
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # Always on, for exact resume: noise drawn per batch from (seed, rank, batch index), so a resumed run matches an
    # uninterrupted one; checkpoints written to a temp file and renamed, so a kill mid-save keeps last.ckpt.
    callbacks.append(StepSeed(cfg.seed))
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()])

    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
        if not is_trusted():
            read_checkpoint(ckpt_path)  # a pickled payload or foreign _target_ -> one clear error before fit
    t0 = time.perf_counter()
    with torch.serialization.safe_globals(SAFE_GLOBALS):  # a resumed checkpoint is read like any other
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not is_trusted())
    fit_seconds = time.perf_counter() - t0
    # ModelCheckpoint saves only every n steps: make last.ckpt the final state whatever max_steps is.
    if trainer.global_step % _every_n(callbacks):
        trainer.save_checkpoint(last)

    metrics: dict[str, float] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
    }
    steps = trainer.global_step
    tokens = (steps * datamodule.batch_size * datamodule.window * trainer.accumulate_grad_batches
              * trainer.world_size)
    metrics.update(
        {"global_step": steps, "fit_seconds": fit_seconds, "parameters": n_params,
         "train_tokens_per_second": tokens / fit_seconds if fit_seconds > 0 and not ckpt_path else math.nan,
         "precision": str(trainer.precision)}
    )
    clock = [c for c in callbacks if isinstance(c, LearningCurve)]
    if clock:  # training seconds only (no start-up, validation, checkpoints); continues across resumes
        metrics["train_seconds"] = clock[0].train_seconds
    if str(cfg.trainer.get("precision")) == "auto":
        metrics["precision_probe"] = probe(str(trainer.strategy.root_device.type)).as_dict()  # type: ignore
    if cfg.get("run_test", False):
        out = trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in (out[0] if out else {}).items()})
    metrics["checkpoint"] = str(last)  # type: ignore[assignment]
    _finish_loggers(trainer)
    if trainer.is_global_zero:  # under DDP every rank runs train(); one writes
        with atomic_write(run_dir / "metrics.json") as f:
            f.write(json.dumps(metrics, indent=2) + "\n")
    log.info("metrics: %s", json.dumps(metrics))
    return metrics

"""The evaluation protocol (as Caduceus): per seed, carve a validation set from train (stratified; for genome
tasks blocks of neighbouring windows that overlap no window trained on: `data.carve_validation`), train,
pick the epoch with the best validation accuracy, evaluate that epoch on test once; report mean +/- std.

Methods are small objects built from config (`_target_`), each with `run(task, seed, ctx) -> metrics`:
`DenoiserMethod` (a seqdiff backbone from a checkpoint or from scratch, fine-tuned or frozen),
`CNNMethod` and `KmerLRMethod` (baselines).
"""

from __future__ import annotations

import copy
import logging
import math
import re
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from seqdiff.dna.downstream.classifier import SequenceClassifier
from seqdiff.dna.downstream.data import carve_validation, encode_sequences, loader
from seqdiff.dna.downstream.encoders import FIXED_POOLS, BackboneEncoder, CNNEncoder, MemoizedEncoder
from seqdiff.dna.downstream.metrics import METRICS, score
from seqdiff.dna.downstream.tasks import Task

log = logging.getLogger("seqdiff.downstream")
PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # linear probe: C grid, picked on validation
HEAD_INITS = ("random", "probe")  # fine-tuning head: random init | LP-FT (the linear probe's solution)


@dataclass
class Context:
    """What every method shares within one run."""

    tokenizer: Any  # the task's tokenizer (a checkpoint's must equal it)
    trainer: Any  # lightning.Trainer config (DictConfig / dict with _target_)
    batch_size: int = 64
    val_fraction: float = 0.1
    long_sequences: str = "truncate"  # truncate | tile | error (sequences longer than a model's window)
    run_dir: Path = Path("outputs/finetune")
    keep_checkpoints: bool = True
    patience: int | None = None  # stop after this many epochs without a better val/acc (the best is restored)


def encode_split(task: Task, seed: int, ctx: Context, window: int | None):
    """(train, val, test) as ((token tensors, label ids), ...) for this seed's validation carve.

    The whole task is encoded before carving, so an error names the sequence's file and row."""
    y = task.label_ids(task.train_labels)
    tr, va = carve_validation(y, ctx.val_fraction, seed, task.train_spans)
    xs, xt = (encode_sequences(seqs, ctx.tokenizer, window, ctx.long_sequences, f"{task.name} {part}",
                               task.train_rows if part == "train" else task.test_rows)
              for part, seqs in (("train", task.train_sequences), ("test", task.test_sequences)))
    return ([xs[i] for i in tr], [y[i] for i in tr]), ([xs[i] for i in va], [y[i] for i in va]), \
        (xt, task.label_ids(task.test_labels))


def fit_and_test(module: SequenceClassifier, task: Task, seed: int, ctx: Context, window: int | None,
                 name: str, max_epochs: int | None = None) -> dict[str, float]:
    """Train `module` with the protocol; returns test metrics of the best-validation epoch.

    max_epochs (a method's own budget) overrides the shared trainer config's. With ctx.patience, training
    stops early once val/acc has not improved for that many epochs; the best epoch's weights are tested."""
    (xtr, ytr), (xva, yva), (xte, yte) = encode_split(task, seed, ctx, window)
    pad = ctx.tokenizer.pad_id
    out_dir = ctx.run_dir / name / f"seed{seed}"
    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="epoch{epoch}", auto_insert_metric_name=False,
                           monitor="val/acc", mode="max", save_top_k=1, save_weights_only=True)
    extra = {} if max_epochs is None else {"max_epochs": max_epochs}
    callbacks = [ckpt]
    if ctx.patience is not None:
        callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=ctx.patience))
    trainer: L.Trainer = instantiate(ctx.trainer, callbacks=callbacks,
                                     logger=CSVLogger(out_dir, name="logs", version=""), **extra)
    trainer.fit(module, loader(xtr, ytr, pad, ctx.batch_size, True, seed), loader(xva, yva, pad, ctx.batch_size, False))
    best = ckpt.best_model_path
    if not best:
        raise RuntimeError(f"{name} seed {seed}: no validation epoch completed")
    result = trainer.test(module, loader(xte, yte, pad, ctx.batch_size, False), ckpt_path=best, verbose=False)[0]
    metrics = {k.removeprefix("test/"): float(v) for k, v in result.items() if k.removeprefix("test/") in METRICS}
    metrics.update(best_epoch=int(re.search(r"epoch(\d+)", Path(best).name).group(1)),
                   val_acc=float(ckpt.best_model_score), epochs=trainer.current_epoch)
    if not ctx.keep_checkpoints:
        shutil.rmtree(out_dir, ignore_errors=True)
    else:
        metrics["checkpoint"] = best  # type: ignore[assignment]
    return metrics


class DenoiserMethod:
    """A seqdiff denoiser + pooled linear head. checkpoint=None trains the same architecture from scratch:
    the architecture of `architecture_from` (a checkpoint path) if given, else `model` with `window`.

    freeze=True is a linear probe: probe="sklearn" standardises the frozen pooled features and fits a
    scikit-learn logistic regression with C picked on validation (`Cs`); probe="head" trains the torch head
    (and attention pooling) with the protocol. `recipe` holds the SequenceClassifier fine-tuning options
    (warmup, schedule, layer_decay, rc_augment, rc_predict, input_mask)."""

    def __init__(self, checkpoint: str | None = None, freeze: bool = False, lr: float = 3e-4,
                 weight_decay: float = 0.01, dropout: float = 0.1, pool: str = "mean", pool_heads: int = 4,
                 pool_width: int = 20,
                 architecture_from: str | None = None, model: Any = None, window: int = 512,
                 max_epochs: int | None = None, probe: str = "sklearn", Cs: tuple[float, ...] = PROBE_CS,
                 head_init: str = "random", **recipe: Any) -> None:
        if probe not in ("sklearn", "head"):
            raise ValueError(f"probe must be sklearn or head, got {probe!r}")
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
        if head_init == "probe" and pool not in FIXED_POOLS:
            raise ValueError(f"head_init=probe needs a parameter-free pool {FIXED_POOLS}, got pool={pool!r}")
        self.head_init = head_init
        if freeze and probe == "sklearn" and pool not in FIXED_POOLS:
            raise ValueError(f"probe=sklearn needs a parameter-free pool {FIXED_POOLS}, got pool={pool!r} "
                             "(or set probe=head to train the pooling)")
        self.checkpoint, self.freeze, self.pool, self.pool_heads, self.max_epochs = \
            checkpoint, freeze, pool, pool_heads, max_epochs
        self.pool_width = pool_width
        self.probe, self.Cs = probe, tuple(Cs)
        self.hparams = {"lr": lr, "weight_decay": weight_decay, "dropout": dropout, **recipe}
        self.architecture_from, self.model, self.window = architecture_from, model, window
        self._loaded = None
        self._frozen: torch.nn.Module | None = None  # shared by seeds: frozen features never change
        self._cache: dict = {}

    def _load(self, path: str, tokenizer: Any, task: Task):
        import seqdiff
        from seqdiff.checkpoint import check_tokenizer

        loaded = seqdiff.load(path)
        check_tokenizer(loaded, tokenizer, f"task {task.name} (set tokenizer=... to the checkpoint's)")
        return loaded

    def backbone(self, task: Task, ctx: Context) -> torch.nn.Module:
        if self.checkpoint:
            if self._loaded is None:
                self._loaded = self._load(self.checkpoint, ctx.tokenizer, task)
                log.info("pretrained %s from %s (window %d tokens)", type(self._loaded.backbone).__name__,
                         self.checkpoint, self._loaded.window)
            return copy.deepcopy(self._loaded.backbone)  # a fresh copy per seed
        from seqdiff.train import build_backbone

        if self.architecture_from:
            arch = self._load(self.architecture_from, ctx.tokenizer, task)
            return build_backbone(arch.config["model"], ctx.tokenizer, arch.window)[0]
        if self.model is None:
            raise ValueError("checkpoint=null needs a model config (model=transformer, ...) to train from scratch")
        return build_backbone(self.model, ctx.tokenizer, self.window)[0]

    def run(self, task: Task, seed: int, ctx: Context, name: str = "denoiser") -> dict[str, float]:
        L.seed_everything(seed, workers=True)  # before building: a scratch backbone's init depends on it
        tok = ctx.tokenizer
        if self.freeze:
            if self._frozen is None or not self.checkpoint:
                self._frozen, self._cache = self.backbone(task, ctx).eval(), {}
            encoder = MemoizedEncoder(BackboneEncoder(self._frozen, tok.pad_id, self.pool, self.pool_heads,
                                                       self.pool_width),
                                      cache=self._cache)
            if self.probe == "sklearn":
                return sklearn_probe(encoder, task, seed, ctx, self.Cs)
        else:
            encoder = BackboneEncoder(self.backbone(task, ctx), tok.pad_id, self.pool, self.pool_heads,
                                      self.pool_width)
        module = SequenceClassifier(encoder, task.num_classes, tok.pad_id, self.freeze, mask_id=tok.mask_id,
                                    complement_ids=getattr(tok, "complement_ids", None), **self.hparams)
        probe = None
        if self.head_init == "probe" and not self.freeze:  # LP-FT: fine-tuning starts from the linear probe
            probe = probe_head(encoder, task, seed, ctx, self.Cs)
            with torch.no_grad():
                module.head[-1].weight.copy_(probe["weight"])
                module.head[-1].bias.copy_(probe["bias"])
        metrics = fit_and_test(module, task, seed, ctx, encoder.window, name, self.max_epochs)
        if probe is not None:
            metrics.update(probe_C=probe["C"], probe_val_acc=probe["val_acc"])
        return metrics



def _features(encoder: torch.nn.Module, tokens: list[torch.Tensor], ctx: Context) -> np.ndarray:
    """Pooled features of token rows, batch by batch, in eval mode without gradients."""
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), ctx.batch_size):
            x = torch.nn.utils.rnn.pad_sequence(tokens[i:i + ctx.batch_size], batch_first=True,
                                                padding_value=ctx.tokenizer.pad_id)
            out.append(encoder(x, x != ctx.tokenizer.pad_id).float())
    encoder.train(was_training)
    return torch.cat(out).double().numpy()


def _fit_probe(ftr, ytr, fva, yva, Cs: tuple[float, ...], seed: int):
    """StandardScaler -> LogisticRegression for each C; (pipeline, C, val accuracy) of the best on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for C in Cs:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
        pipe.fit(ftr, ytr)
        acc = float((pipe.predict(fva) == np.asarray(yva)).mean())
        if best is None or acc > best[2]:
            best = (pipe, float(C), acc)
    if best is None:
        raise ValueError("Cs is empty")
    return best


def sklearn_probe(encoder: MemoizedEncoder, task: Task, seed: int, ctx: Context,
                  Cs: tuple[float, ...] = PROBE_CS) -> dict[str, float]:
    """Linear probe: frozen pooled features -> StandardScaler -> LogisticRegression, C by validation accuracy."""
    (xtr, ytr), (xva, yva), (xte, yte) = encode_split(task, seed, ctx, encoder.window)
    ftr, fva, fte = (_features(encoder, x, ctx) for x in (xtr, xva, xte))
    pipe, C, val_acc = _fit_probe(ftr, ytr, fva, yva, Cs, seed)
    probs = np.zeros((len(fte), task.num_classes))
    probs[:, pipe.classes_] = pipe.predict_proba(fte)
    metrics = score(probs, np.asarray(yte))
    metrics.update(C=C, val_acc=val_acc)
    return metrics


def probe_head(encoder: torch.nn.Module, task: Task, seed: int, ctx: Context,
               Cs: tuple[float, ...] = PROBE_CS) -> dict:
    """LP-FT's first stage: the sklearn probe on the encoder's current (pretrained) features, folded into the
    weights of a linear head on the raw features: {"weight": (C, D), "bias": (C,), "C", "val_acc"}.

    The scaler is folded in (w / sigma, b - w . mu / sigma); a binary logistic regression's single logit z
    becomes logits (0, z), whose softmax is the same sigmoid."""
    (xtr, ytr), (xva, yva), _ = encode_split(task, seed, ctx, encoder.window)
    pipe, C, val_acc = _fit_probe(_features(encoder, xtr, ctx), ytr, _features(encoder, xva, ctx), yva, Cs, seed)
    scaler, lr = pipe[0], pipe[-1]
    w = lr.coef_ / scaler.scale_
    b = lr.intercept_ - w @ scaler.mean_
    weight, bias = np.zeros((task.num_classes, w.shape[1])), np.zeros(task.num_classes)
    if len(lr.classes_) == 2:
        weight[lr.classes_[1]], bias[lr.classes_[1]] = w[0], b[0]
    else:
        weight[lr.classes_], bias[lr.classes_] = w, b
    return {"weight": torch.as_tensor(weight, dtype=torch.float32), "bias": torch.as_tensor(bias, dtype=torch.float32),
            "C": C, "val_acc": val_acc}


class CNNMethod:
    """The small CNN baseline on the task tokenizer's ids (no window: convolutions take any length)."""

    def __init__(self, channels: int = 128, kernel_size: int = 9, n_layers: int = 3, pool: str = "max",
                 lr: float = 1e-3, weight_decay: float = 0.01, dropout: float = 0.1,
                 max_epochs: int | None = None) -> None:
        self.max_epochs = max_epochs
        self.arch = {"channels": channels, "kernel_size": kernel_size, "n_layers": n_layers, "pool": pool}
        self.hparams = {"lr": lr, "weight_decay": weight_decay, "dropout": dropout}

    def run(self, task: Task, seed: int, ctx: Context, name: str = "cnn") -> dict[str, float]:
        L.seed_everything(seed, workers=True)
        tok = ctx.tokenizer
        encoder = CNNEncoder(tok.vocab_size, tok.pad_id, **self.arch)
        module = SequenceClassifier(encoder, task.num_classes, tok.pad_id, False, **self.hparams)
        return fit_and_test(module, task, seed, ctx, None, name, self.max_epochs)


class KmerLRMethod:
    """k-mer (1..k_max) frequencies + logistic regression; C picked on the validation set."""

    def __init__(self, k_max: int = 6, Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)) -> None:
        self.k_max, self.Cs = k_max, tuple(Cs)

    def run(self, task: Task, seed: int, ctx: Context, name: str = "kmer_lr") -> dict[str, float]:
        from seqdiff.dna.downstream.baselines import fit_kmer_lr, predict_proba

        y = task.label_ids(task.train_labels)
        tr, va = carve_validation(y, ctx.val_fraction, seed, task.train_spans)
        xs = task.train_sequences
        train, val = ([xs[i] for i in tr], [y[i] for i in tr]), ([xs[i] for i in va], [y[i] for i in va])
        test = (task.test_sequences, task.label_ids(task.test_labels))
        pipe, C, val_acc = fit_kmer_lr(train, val, self.k_max, self.Cs, seed)
        metrics = score(predict_proba(pipe, test[0], task.num_classes), np.asarray(test[1]))
        metrics.update(C=C, val_acc=val_acc)
        return metrics


def run_seeds(method, task: Task, seeds: list[int], ctx: Context, name: str) -> dict:
    """Run `method` once per seed; {"per_seed": [...], "mean": {...}, "std": {...}} over METRICS."""
    per_seed = []
    for seed in seeds:
        m = method.run(task, seed, ctx, name=name)
        log.info("%s seed %d: %s", name, seed, {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()})
        per_seed.append({"seed": seed, **m})
    return {"per_seed": per_seed, **summarize(per_seed)}


def summarize(per_seed: list[dict]) -> dict:
    """Mean and sample std (0 for a single seed) of every metric over seeds."""
    mean, std = {}, {}
    for k in METRICS:
        vals = [r[k] for r in per_seed if k in r and not math.isnan(r[k])]
        if vals:
            mean[k] = statistics.fmean(vals)
            std[k] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    out = {"mean": mean, "std": std, "n_seeds": len(per_seed)}
    val = [r["val_acc"] for r in per_seed if "val_acc" in r]
    if val:  # what a recipe is chosen by (test is reported, never tuned on)
        out["val_acc"] = {"mean": statistics.fmean(val), "std": statistics.stdev(val) if len(val) > 1 else 0.0}
    return out

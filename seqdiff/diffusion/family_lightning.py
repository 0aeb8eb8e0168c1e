"""LightningModules for the diffusion families (uniform noise, score entropy, class-conditional models) and for
the noisy classifier used by classifier guidance. Training and validation only; sampling is seqdiff.sampling.

Both share `SequenceLM`'s optimiser, LR schedule, EMA and checkpoint metadata; `DiffusionLM` (MDLM) is untouched.
The noise process comes from config as a partial (`_partial_: true`) completed here with the schedule
(`noise=`) and the tokenizer's alphabet, so `objective=udlm noise=cosine` works as for MDLM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdiff.diffusion.families import Family, MeanParameterization, ScoreParameterization, alphabet_ids
from seqdiff.diffusion.lightning import SequenceLM
from seqdiff.noise import LogLinearSchedule, Schedule, sample_t
from seqdiff.noise.processes import NoiseProcess

log = logging.getLogger("seqdiff.families")

def build_process(process: Callable[..., NoiseProcess], schedule: Schedule, tokenizer: Any) -> NoiseProcess:
    """Complete a process partial (or class) with the schedule and the tokenizer's vocabulary."""
    return process(schedule=schedule, vocab_size=tokenizer.vocab_size, alphabet=alphabet_ids(tokenizer),
                   mask_id=tokenizer.mask_id)


class _LabelsMixin:
    """Class labels of the current batch (`batch["y"]`, if the datamodule yields them) for `token_nats`."""

    _labels: Tensor | None = None
    classes: list[str] | None = None

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(dm, "classes", None)
        if classes is not None:
            self.classes = [str(c) for c in classes]
        self._check_classes()

    def _check_classes(self) -> None:
        pass

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._labels = batch.get("y")
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._labels = batch.get("y")
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._labels = batch.get("y")
        return super().test_step(batch, batch_idx)


class FamilyLM(_LabelsMixin, SequenceLM):
    """A diffusion family (process x parameterisation) trained on its continuous-time NELBO.

    label_dropout: with a class-conditional backbone (`model=transformer_cond`) and labelled data, each
    example's label is replaced by the "no label" class with this probability, so the one network learns
    p(x | y) and p(x) (classifier-free guidance). Unconditional backbones ignore labels.
    """

    objective = "family"

    def __init__(self, backbone: nn.Module, tokenizer: Any, process: Callable[..., NoiseProcess],
                 parameterization: MeanParameterization | ScoreParameterization, schedule: Schedule | None = None,
                 name: str = "family", label_dropout: float = 0.0, antithetic: bool = True, **kwargs: Any) -> None:
        super().__init__(backbone, tokenizer, **kwargs)
        if not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
        self.schedule = schedule or LogLinearSchedule()
        self.family = Family(build_process(process, self.schedule, tokenizer), parameterization, name)
        self.label_dropout, self.antithetic = label_dropout, antithetic
        self.conditional = hasattr(backbone, "num_classes") and hasattr(backbone, "label_embed")
        if not self.family.process.absorbing and not getattr(backbone, "time_conditioning", True):
            log.warning("uniform noise without time conditioning: the network must guess the noise level from the "
                        "tokens; set model.time_conditioning=true")

    def _check_classes(self) -> None:
        if self.conditional and self.classes is not None and len(self.classes) != self.backbone.num_classes:
            raise ValueError(f"the data have {len(self.classes)} classes {self.classes} but the model was built with "
                             f"num_classes={self.backbone.num_classes}")

    def loss_mask(self, x0: Tensor) -> Tensor:
        return self.family.process.loss_mask(x0) & (x0 != self.tokenizer.pad_id)

    def _train_labels(self) -> Tensor | None:
        if not self.conditional or self._labels is None:
            return None
        y = self._labels
        if self.training and self.label_dropout > 0:
            drop = torch.rand(y.shape, device=y.device) < self.label_dropout
            y = torch.where(drop, torch.full_like(y, self.backbone.num_classes), y)
        return y

    def token_nats(self, backbone: nn.Module, x0: Tensor, q: Tensor | None = None) -> Tensor:
        """q (the count teacher's soft targets) is for MDLM only and ignored here."""
        t = sample_t(x0.shape[0], antithetic=self.antithetic, eps=self.schedule.eps, device=x0.device)
        return self.family.nelbo(backbone, x0, t, self.loss_mask(x0), labels=self._train_labels())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["seqdiff"]["schedule"] = self.schedule.config()
        checkpoint["seqdiff"]["family"] = {**self.family.config(), "classes": self.classes}


class NoisyClassifierLM(_LabelsMixin, SequenceLM):
    """p(y | x_t, t) for classifier guidance: cross-entropy on sequences noised by `process` at t ~ U[0, 1].

    Logs train/loss, val/loss and val/acc (accuracy at random noise levels) and val/acc_clean (t = 0).
    """

    objective = "classifier"

    def __init__(self, backbone: nn.Module, tokenizer: Any, process: Callable[..., NoiseProcess],
                 schedule: Schedule | None = None, **kwargs: Any) -> None:
        super().__init__(backbone, tokenizer, **kwargs)
        if not hasattr(backbone, "classify"):
            raise ValueError("objective=noisy_classifier needs a classifier backbone (model=classifier)")
        self.schedule = schedule or LogLinearSchedule()
        self.process = build_process(process, self.schedule, tokenizer)

    def _check_classes(self) -> None:
        if self.classes is None:
            raise ValueError("the noisy classifier needs labelled data (data=splice or another labelled datamodule)")
        if len(self.classes) != self.backbone.num_classes:
            raise ValueError(f"the data have {len(self.classes)} classes but model.num_classes="
                             f"{self.backbone.num_classes}")

    def _ce(self, backbone: nn.Module, x0: Tensor, clean: bool = False) -> tuple[Tensor, Tensor]:
        if self._labels is None:
            raise ValueError("the noisy classifier needs batches with labels (batch['y'])")
        t = torch.zeros(x0.shape[0], device=x0.device) if clean else torch.rand(x0.shape[0], device=x0.device)
        mask = self.process.loss_mask(x0)
        xt = x0 if clean else self.process.add_noise(x0, t, maskable=mask)
        logits = backbone(xt, t)
        return F.cross_entropy(logits, self._labels), (logits.argmax(-1) == self._labels).float().mean()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._labels = batch.get("y")
        loss, _ = self._ce(self.backbone, batch["x0"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["x0"]))
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=False)
        return loss

    def _eval(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        self._labels = batch.get("y")
        n = len(batch["x0"])
        loss, acc = self._ce(self.eval_backbone(), batch["x0"])
        _, acc_clean = self._ce(self.eval_backbone(), batch["x0"], clean=True)
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc, f"{stage}/acc_clean": acc_clean},
                      prog_bar=stage == "val", batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["seqdiff"]["schedule"] = self.schedule.config()
        checkpoint["seqdiff"]["classifier"] = {"process": self.process.config(), "classes": self.classes}

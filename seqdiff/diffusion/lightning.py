"""LightningModules: training and validation only. Sampling lives in seqdiff.sampling.

`SequenceLM` owns what every objective shares (AdamW, warmup + cosine LR, EMA weights, checkpoint metadata);
`DiffusionLM` (masked diffusion NELBO) and `AutoregressiveLM` (next-token NLL) only define the loss.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from seqdiff.backbones.ngram_prior import holding_out
from seqdiff.diffusion.objective import LN2, ar_nll, mdlm_nelbo
from seqdiff.distributed import (
    check_fsdp_units,
    clip_sharded_grad_norm,
    decay_by_name,
    ema_update,
    fsdp_root,
    param_groups,
)
from seqdiff.noise import LogLinearSchedule, Schedule, sample_t


class SequenceLM(L.LightningModule):
    objective: str = "base"

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        ema_decay: float = 0.999,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.ema_decay = ema_decay
        # EMA weights live in a frozen copy so they are saved, restored on resume and used for evaluation.
        self.ema = copy.deepcopy(backbone).requires_grad_(False) if ema_decay > 0 else None
        # Weight-decay groups by name, decided now: under FSDP every parameter is a flat 1-D shard by the time
        # configure_optimizers runs (seqdiff.distributed).
        self.decay_by_name = decay_by_name(backbone)
        self.bases_per_token = getattr(tokenizer, "bases_per_token", 1)
        self.seqdiff_config: dict | None = None  # resolved Hydra config, set by the train script
        self.backbone_init: dict = {}  # kwargs the backbone was built with beyond its config (vocab_size, ...)

    # ---- loss ---------------------------------------------------------------------------------------------
    def token_nats(self, backbone: nn.Module, x0: Tensor, q: Tensor | None = None) -> Tensor:
        """(B, L) nats, 0 on ignored tokens; q: optional soft targets (B, L, 5) for training."""
        raise NotImplementedError

    def loss_mask(self, x0: Tensor) -> Tensor:
        return x0 != self.tokenizer.pad_id

    def _mean_nats(self, backbone: nn.Module, x0: Tensor, q: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mask = self.loss_mask(x0)
        nats = self.token_nats(backbone, x0, q)
        n = mask.sum().clamp_min(1)
        return nats.sum() / n, n

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        # No host syncs per step: logged on_step only, so no batch_size is needed (an int(n) would wait
        # for the GPU), and the LR is a CPU tensor (a Python float becomes a host-to-device copy).
        with holding_out(self.backbone, batch["x0"]):  # an n-gram prior must not count the targets
            loss, _ = self._mean_nats(self.backbone, batch["x0"], batch.get("q"))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpb", loss / LN2 / self.bases_per_token)
        self.log("lr", torch.tensor(self.optimizers().param_groups[0]["lr"]), prog_bar=False)
        return loss

    def eval_backbone(self) -> nn.Module:
        return self.ema if self.ema is not None else self.backbone

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, n = self._mean_nats(self.eval_backbone(), batch["x0"])
        # batch_size=n (a tensor, no host sync): the epoch value is the token-weighted mean over batches and ranks
        self.log("val/loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/bpb", loss / LN2 / self.bases_per_token, prog_bar=True, batch_size=n, sync_dist=True)
        return loss

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, n = self._mean_nats(self.eval_backbone(), batch["x0"])
        self.log("test/bpb", loss / LN2 / self.bases_per_token, batch_size=n, sync_dist=True)
        return loss

    # ---- EMA ----------------------------------------------------------------------------------------------
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Updating here (not in on_train_batch_end, which runs after the checkpoint callback) means a
        # step-N checkpoint holds the step-N EMA, so a resumed run matches an uninterrupted one exactly.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            ema_update(self.ema, self.backbone, self.ema_decay)

    # ---- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        if fsdp_root(self.trainer) is not None:
            check_fsdp_units(self.backbone, self.ema)
        # fused AdamW on CUDA: one kernel per step, and it can skip a non-finite step on the GPU without a host
        # sync (NonFiniteGuard sets its found_inf); CPU keeps the default foreach implementation.
        opt = torch.optim.AdamW(
            param_groups(self.backbone, self.decay_by_name, self.weight_decay),
            lr=self.lr,
            betas=self.betas,
            fused=self.device.type == "cuda" or None,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup, floor = min(self.warmup_steps, total // 2), self.min_lr_ratio

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # Under FSDP, Lightning's norm clipping raises; the root FSDP module clips by the true total norm.
        if not clip_sharded_grad_norm(self.trainer, gradient_clip_val, gradient_clip_algorithm):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- checkpoint metadata ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["seqdiff"] = {
            "config": self.seqdiff_config,
            "tokenizer": self.tokenizer.config(),
            "objective": self.objective,
            "backbone_init": self.backbone_init,
        }


class DiffusionLM(SequenceLM):
    """Masked diffusion (MDLM): SUBS parameterisation, continuous-time NELBO, antithetic timesteps."""

    objective = "mdlm"

    def __init__(self, backbone: nn.Module, tokenizer: Any, schedule: Schedule | None = None,
                 antithetic: bool = True, teacher_weight: float = 0.0, train_t_power: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(backbone, tokenizer, **kwargs)
        if not train_t_power > 0:
            raise ValueError(f"objective.train_t_power must be > 0, got {train_t_power}")
        self.schedule = schedule or LogLinearSchedule()
        self.antithetic = antithetic
        # Training only: t = u ** power (power > 1 spends more of training on lightly masked inputs, where the
        # visible context decides the answer). Validation, test and evaluation always use the NELBO's uniform t.
        self.train_t_power = float(train_t_power)
        self.teacher_weight = teacher_weight  # weight of the count teacher's soft targets (data.teacher)

    def token_nats(self, backbone: nn.Module, x0: Tensor, q: Tensor | None = None) -> Tensor:
        t = sample_t(x0.shape[0], antithetic=self.antithetic, eps=self.schedule.eps, device=x0.device)
        if self.training and self.train_t_power != 1.0:
            t = t.pow(self.train_t_power).clamp_min(self.schedule.eps)
        return mdlm_nelbo(backbone, x0, self.schedule, t, self.tokenizer.mask_id, self.loss_mask(x0),
                          soft_targets=q, soft_weight=self.teacher_weight if self.training else 0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["seqdiff"]["schedule"] = self.schedule.config()


class AutoregressiveLM(SequenceLM):
    """Left-to-right next-token model on the same backbone (must be built with causal=True)."""

    objective = "ar"

    def __init__(self, backbone: nn.Module, tokenizer: Any, **kwargs: Any) -> None:
        if not getattr(backbone, "causal", False):
            raise ValueError("AutoregressiveLM needs a causal backbone: use model=transformer_ar (causal: true)")
        super().__init__(backbone, tokenizer, **kwargs)

    def token_nats(self, backbone: nn.Module, x0: Tensor, q: Tensor | None = None) -> Tensor:
        return ar_nll(backbone, x0, self.tokenizer.bos_id, self.loss_mask(x0))

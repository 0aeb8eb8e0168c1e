"""`SequenceClassifier`: an encoder (pretrained denoiser, fresh denoiser or CNN) + a pooled linear head.

freeze=True trains the head (and a trainable pooling) on a fixed backbone; freeze=False fine-tunes everything.
The fine-tuning recipe (docs/downstream.md has the ablation that chose the defaults): linear warm-up then
cosine or linear decay of the learning rate (per optimizer step), layer-wise learning-rate decay
(`layer_decay`: block i of n gets lr * layer_decay^(n - i), the embedding lr * layer_decay^(n + 1)), optional
reverse-complement augmentation (`rc_augment`), RC-averaged prediction at validation/test (`rc_predict`:
class probabilities of x and of its reverse complement are averaged) and light input masking (`input_mask`:
each real token is replaced by the mask token with this probability while training; evaluation is clean).
Metrics (torchmetrics) are logged per epoch as `val/acc`, `val/mcc`, ..., `test/...`.
"""

from __future__ import annotations

import math
import re

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdiff.dna.downstream.metrics import classification_metrics

SCHEDULES = ("constant", "cosine", "linear")
_BLOCK = re.compile(r"(?:^|\.)(?:blocks|layers)\.(\d+)\.")


def layer_ids(module: nn.Module, prefix: str = "encoder.backbone.") -> tuple[dict[str, int], int]:
    """Depth of every parameter for layer-wise lr decay: the backbone's embedding 0, its block i i + 1,
    everything else (backbone output layers, pooling, head) n + 1, where n is the number of blocks."""
    names = [n for n, _ in module.named_parameters()]
    blocks = [int(m.group(1)) for n in names if n.startswith(prefix) and (m := _BLOCK.search(n[len(prefix):]))]
    n = max(blocks) + 1 if blocks else 0
    ids = {}
    for name in names:
        rest = name[len(prefix):] if name.startswith(prefix) else None
        m = _BLOCK.search(rest) if rest is not None else None
        ids[name] = int(m.group(1)) + 1 if m else 0 if rest is not None and rest.startswith("embed") else n + 1
    return ids, n


def param_groups(module: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: lr * layer_decay^(n + 1 - depth); weight decay on matrices only (not biases, norms)."""
    ids, n = layer_ids(module)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "embed" not in name
        g = groups.setdefault((ids[name], decay), {"params": [], "lr": lr * layer_decay ** (n + 1 - ids[name]),
                                                   "weight_decay": weight_decay if decay else 0.0,
                                                   "depth": ids[name]})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def lr_lambda(total: int, warmup: float, schedule: str):
    """Multiplier of the base lr at optimizer step s: linear warm-up over warmup * total steps, then decay to 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    w = int(round(warmup * total))

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        if schedule == "constant":
            return 1.0
        frac = min(1.0, (step - w) / max(1, total - w))
        return 0.5 * (1.0 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac

    return f


def reverse_complement_padded(x: Tensor, mask: Tensor, complement_ids: Tensor) -> Tensor:
    """Reverse-complement each right-padded row's real tokens; pads stay at the end of the row."""
    lengths = mask.sum(1, keepdim=True)
    j = torch.arange(x.shape[1], device=x.device).expand_as(x)
    src = (lengths - 1 - j).clamp(min=0)
    rc = complement_ids.to(x.device)[x.gather(1, src)]
    return torch.where(j < lengths, rc, x)


class SequenceClassifier(L.LightningModule):
    def __init__(self, encoder: nn.Module, num_classes: int, pad_id: int, freeze: bool = False,
                 lr: float = 3e-4, weight_decay: float = 0.01, dropout: float = 0.1, warmup: float = 0.0,
                 schedule: str = "constant", layer_decay: float = 1.0, rc_augment: bool = False,
                 rc_predict: bool = False, input_mask: float = 0.0, mask_id: int | None = None,
                 complement_ids: Tensor | None = None) -> None:
        super().__init__()
        self.encoder, self.pad_id, self.freeze = encoder, pad_id, freeze
        self.lr, self.weight_decay, self.warmup, self.schedule = lr, weight_decay, warmup, schedule
        self.layer_decay, self.rc_augment, self.rc_predict, self.input_mask = layer_decay, rc_augment, rc_predict, \
            input_mask
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if (rc_augment or rc_predict) and complement_ids is None:
            raise ValueError("rc_augment/rc_predict need the tokenizer's complement_ids")
        if input_mask and mask_id is None:
            raise ValueError("input_mask > 0 needs the tokenizer's mask_id")
        self.mask_id = mask_id
        self.register_buffer("complement_ids", complement_ids, persistent=False)
        if freeze:  # the backbone is fixed; a trainable pooling (attention) still learns
            getattr(self.encoder, "backbone", self.encoder).requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_features, num_classes))
        self.val_metrics = classification_metrics(num_classes, prefix="val/")
        self.test_metrics = classification_metrics(num_classes, prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, L) -> class logits (B, C)."""
        if self.freeze:
            self.encoder.eval()  # frozen: no dropout/BatchNorm updates either
        return self.head(self.encoder(x, x != self.pad_id))

    def probs(self, x: Tensor) -> Tensor:
        """Class probabilities (B, C); with rc_predict the mean over x and its reverse complement."""
        p = self(x).softmax(-1)
        if self.rc_predict:
            p = 0.5 * (p + self(reverse_complement_padded(x, x != self.pad_id, self.complement_ids)).softmax(-1))
        return p

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x = batch["x"]
        real = x != self.pad_id
        if self.rc_augment:  # each row flipped to its reverse complement with probability 1/2
            flip = torch.rand(x.shape[0], 1, device=x.device) < 0.5
            x = torch.where(flip, reverse_complement_padded(x, real, self.complement_ids), x)
        if self.input_mask:
            x = x.masked_fill(real & (torch.rand(x.shape, device=x.device) < self.input_mask), self.mask_id)
        loss = F.cross_entropy(self(x), batch["y"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["y"]))
        return loss

    def _eval_step(self, batch: dict[str, Tensor], metrics, stage: str) -> None:
        p = self.probs(batch["x"])
        self.log(f"{stage}/loss", F.nll_loss(p.clamp_min(1e-12).log(), batch["y"]), batch_size=len(batch["y"]))
        metrics.update(p, batch["y"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict({k: v.float() for k, v in self.val_metrics.compute().items()}, prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict({k: v.float() for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self.probs(batch["x"])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(param_groups(self, self.lr, self.weight_decay, self.layer_decay), lr=self.lr)
        if self.schedule == "constant" and not self.warmup:
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, self.warmup, self.schedule))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

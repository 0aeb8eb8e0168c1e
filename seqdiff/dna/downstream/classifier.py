"""`SequenceClassifier`: an encoder (pretrained denoiser, fresh denoiser or CNN) + a pooled linear head.

freeze=True is a linear probe (encoder weights fixed, run without gradients); freeze=False fine-tunes
everything. Metrics (torchmetrics) are logged per epoch as `val/acc`, `val/mcc`, ..., `test/...`.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdiff.dna.downstream.metrics import classification_metrics


class SequenceClassifier(L.LightningModule):
    def __init__(self, encoder: nn.Module, num_classes: int, pad_id: int, freeze: bool = False,
                 lr: float = 3e-4, weight_decay: float = 0.01, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder, self.pad_id, self.freeze = encoder, pad_id, freeze
        self.lr, self.weight_decay = lr, weight_decay
        if freeze:
            self.encoder.requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_features, num_classes))
        self.val_metrics = classification_metrics(num_classes, prefix="val/")
        self.test_metrics = classification_metrics(num_classes, prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, L) -> class logits (B, C)."""
        mask = x != self.pad_id
        if self.freeze:
            self.encoder.eval()  # frozen: no dropout/BatchNorm updates either
            with torch.no_grad():
                features = self.encoder(x, mask)
        else:
            features = self.encoder(x, mask)
        return self.head(features)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self(batch["x"]), batch["y"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["y"]))
        return loss

    def _eval_step(self, batch: dict[str, Tensor], metrics, stage: str) -> None:
        logits = self(batch["x"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["y"]), batch_size=len(batch["y"]))
        metrics.update(logits.softmax(-1), batch["y"])

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
        return self(batch["x"]).softmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

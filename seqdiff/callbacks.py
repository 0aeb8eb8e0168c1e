"""Training callbacks that measure rather than change training.

`LearningCurve` keeps a clock of *training* seconds (forward, backward, optimiser step, EMA: from
on_train_batch_start to on_train_batch_end, so start-up, validation and checkpointing are excluded) and, after
every validation, appends one point `{step, tokens, train_seconds, val_bpb, ...}` to `<run_dir>/curve.json`.
That file is what learning curves (held-out bits/base against training seconds) are drawn from. Its state is
saved in checkpoints, so a resumed run continues the same clock and the same curve.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from seqdiff.io import atomic_write


class LearningCurve(L.Callback):
    def __init__(self, path: str, keys: tuple[str, ...] = ("val/bpb", "val/loss", "train/bpb")) -> None:
        self.path = Path(path)
        self.keys = tuple(keys)
        self.train_seconds = 0.0
        self.points: list[dict[str, float]] = []
        self._t0: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0
            self._t0 = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        x0_tokens = getattr(trainer.datamodule, "batch_size", 0) * getattr(trainer.datamodule, "window", 0)
        point: dict[str, float] = {
            "step": int(trainer.global_step),
            "tokens": int(trainer.global_step * x0_tokens * trainer.accumulate_grad_batches * trainer.world_size),
            "train_seconds": round(self.train_seconds, 3),
        }
        for k in self.keys:
            v = trainer.callback_metrics.get(k)
            if torch.is_tensor(v) and v.numel() == 1:
                point[k] = float(v)
        self.points.append(point)
        with atomic_write(self.path) as f:
            f.write(json.dumps(self.points, indent=1) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "points": list(self.points)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.points = list(state_dict.get("points", []))

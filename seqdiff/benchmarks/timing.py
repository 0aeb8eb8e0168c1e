"""`StepTimer`: a Lightning callback that records the wall time of every training step (for tokens/s, MFU).

Step time = on_train_batch_start -> on_train_batch_end (forward, backward, optimiser, EMA), so validation,
checkpointing and start-up are excluded. Both wall time and process CPU time are kept: on a machine shared
with other jobs the wall time includes the time this process waited for a core, the CPU time does not (with
N threads it counts N cores' worth). The times are written as JSON to `path` when training ends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L

from seqdiff.io import write_text


class StepTimer(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self._t0 = self._c0 = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.times.append(time.perf_counter() - self._t0)
        self.cpu_times.append(time.process_time() - self._c0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        write_text(self.path, json.dumps({"step_seconds": self.times, "step_cpu_seconds": self.cpu_times}) + "\n")

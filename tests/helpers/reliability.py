"""For tests/test_reliability*.py: the tiny DNA training command line on the real chr20 fixture, and small test
callbacks that subprocess tests load by `_target_: helpers.reliability.<Class>` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch

from helpers import CHR20, CHR20_BED, TINY_MODEL_OVERRIDES


def tiny_overrides(run_dir: Path | str, cache_dir: Path | str, steps: int, ckpt_every: int) -> list[str]:
    """CLI overrides for a ~2 s-per-few-steps run: real chr20 windows, the tiny model, no validation."""
    return [
        "data.genome=null", f"++data.fasta={CHR20}", f"++data.bed={CHR20_BED}", f"++data.cache_dir={cache_dir}",
        "data.window=64", "data.batch_size=4", "data.max_eval_windows=4", *TINY_MODEL_OVERRIDES,
        f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1",
        "++trainer.enable_progress_bar=false",
        f"callbacks.checkpoint.every_n_train_steps={ckpt_every}", "callbacks.checkpoint.save_top_k=-1",
        "run_test=false", f"run_dir={run_dir}",
    ]


def train_losses(run_dir: Path | str) -> dict[int, float]:
    """{step: train/loss} from the CSV logger (appended to on resume)."""
    out = {}
    with open(Path(run_dir) / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def load_state(path: Path | str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# ---- callbacks used through `+callbacks.<name>._target_=helpers.reliability.<Class>` -------------------------


class HangAfterStep(L.Callback):
    """Simulate a node that dies mid-run: once `step` optimizer steps are done (and the checkpoint callback has
    run), touch `marker` and block, waiting for SIGKILL. A run resumed from a checkpoint never hangs."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            Path(self.marker).write_text(str(os.getpid()))
            while True:
                time.sleep(1)


class CrashAfterStep(HangAfterStep):
    """In-process variant of HangAfterStep: raise instead of blocking (the checkpoint at `step` is on disk)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


class BatchProbe(L.Callback):
    """Record, per rank, a fingerprint of every training batch and the loss: `<out>/rank<r>.tsv`."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        rows = [",".join(map(str, x.tolist())) for x in batch["x0"]]
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        with open(self.out / f"rank{trainer.global_rank}.tsv", "a") as f:
            for r in rows:
                f.write(f"{trainer.global_step}\t{loss}\t{r}\n")


def kill_when(marker: Path, proc, timeout: float = 300) -> float:
    """SIGKILL `proc` as soon as `marker` exists; returns the seconds waited."""
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the marker")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return time.monotonic() - t0



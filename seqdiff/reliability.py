"""Crash-safe training: atomic checkpoints, a non-finite loss guard, and per-step seeding for exact resume.

- `AtomicCheckpointIO`: Lightning CheckpointIO plugin. A checkpoint is written to a temporary file in the same
  directory, fsynced, then `os.replace`d over the target, so a kill during a save leaves the previous
  `last.ckpt` intact (never a truncated one).
- `NonFiniteGuard`: callback that checks the loss and gradients after backward, before the optimizer step.
  `action="stop"` raises `NonFiniteLossError` after saving the last good state (the update is never applied);
  `action="skip"` drops that update and goes on (and stops after `max_consecutive_skips` in a row).
- `StepSeed`: callback that reseeds torch's global RNG before every training batch from (seed, rank, batch
  index). The noise draws of batch k then do not depend on what ran before it (validation, a DataLoader
  iterator being rebuilt, a restart), which is what makes a resumed run match an uninterrupted one.
- `check_config_types`: every `_target_` node's values against the target's annotations, so a wrong type in
  the config is one clear error naming the key (`trainer.max_steps=abc`), not a failure deep inside torch.

`train()` always uses AtomicCheckpointIO, StepSeed and check_config_types; NonFiniteGuard is
`callbacks.nonfinite` in configs/callbacks/default.yaml. Measurements: docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seqdiff.io import save_torch

log = logging.getLogger("seqdiff.reliability")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to `.<name>.XXXX.tmp` beside the target, fsync, `os.replace`, fsync the directory.

    Remote paths (`s3://...`) fall back to Lightning's own writer, which is as atomic as the object store.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        save_torch(checkpoint, path)  # temp file, fsync, rename, fsync the directory (the rename is durable)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left behind by a save that was killed
            stale.unlink(missing_ok=True)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient; the last good state was saved before stopping."""


class NonFiniteGuard(L.Callback):
    """Detect a NaN/inf loss or gradient before the optimizer applies it.

    Args:
        action: "stop" saves the last good state (weights, optimizer, EMA, schedule and loop state as they were
            before the bad batch) to `<checkpoint dir>/last.ckpt` and raises `NonFiniteLossError`; re-running
            the same command resumes from it. "skip" drops the update (grads set to None, so AdamW leaves the
            weights and its moments alone), logs it and continues.
        max_consecutive_skips: with "skip", stop anyway after this many bad batches in a row (a diverged run).
        check_grads: also check gradients (a finite loss can still backpropagate inf). Ignored under fp16 AMP,
            whose grad scaler already skips overflowing steps by design.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", max_consecutive_skips: int = 20,
                 check_grads: bool = True) -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"NonFiniteGuard action must be 'stop' or 'skip', got {action!r}")
        self.action, self.max_consecutive_skips, self.check_grads = action, max_consecutive_skips, check_grads
        self.skipped = 0  # total skipped updates (saved in checkpoints)
        self._consecutive = 0
        self._loss_ok: torch.Tensor | None = None  # AND over the micro-batches of one optimizer step
        self._last_loss: Any = float("nan")
        self._pending: list[tuple] = []  # (step, flags, cuda event | None, loss) the optimizer skipped on device

    # ---- detection ------------------------------------------------------------------------------------------
    # No host sync per step. The flags stay on the device and are combined over ranks with an
    # all-reduce (max); the host reads them only when it must act. With an optimizer that can skip a step on
    # the device (fused Adam/AdamW, as configure_optimizers builds on CUDA: the `found_inf` input torch's
    # GradScaler uses), the decision is handed to the optimizer and the host reads the flags one batch later,
    # from a non-blocking copy that has long landed: the bad update is still never applied, and "stop" then
    # saves that (unchanged) state. Otherwise (CPU's foreach AdamW, or an fp16 grad scaler) the host decides
    # before the step, which on CPU costs nothing.
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        ok = torch.isfinite(loss.detach()).all()
        self._loss_ok = ok if self._loss_ok is None else self._loss_ok & ok
        self._last_loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        loss_ok = self._loss_ok
        if loss_ok is None:  # no backward ran (cannot happen in Lightning's loop): nothing to object to
            loss_ok = torch.ones((), dtype=torch.bool, device=pl_module.device)
        self._loss_ok = None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        grads_ok = torch.ones((), dtype=torch.bool, device=loss_ok.device)
        if self.check_grads and grads and scaler is None:
            grads_ok = torch.isfinite(torch.stack(torch._foreach_norm(grads))).all().to(loss_ok.device)
        bad = torch.stack([~loss_ok, ~grads_ok]).float()  # (loss bad, gradient bad), on the device
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # one decision for all ranks (any rank bad -> all act), so DDP ranks never diverge or deadlock
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        opt = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the torch one
        if scaler is None and _skips_on_device(opt):
            opt.found_inf = bad.amax()  # 1.0: the fused kernel leaves weights, moments and step count as they are
            event = None
            if bad.is_cuda:
                flags, event = bad.to("cpu", non_blocking=True), torch.cuda.Event()
                event.record()
            else:
                flags = bad
            self._pending.append((trainer.global_step, flags, event, self._last_loss))
            return
        self._decide(trainer, pl_module, trainer.global_step, bad.tolist(), self._last_loss, applied=False)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._drain(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drain(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drain(trainer, pl_module)

    def _drain(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Act on the flags of steps the optimizer already handled on the device (see above)."""
        pending, self._pending = self._pending, []
        for step, flags, event, loss in pending:
            if event is not None:
                event.synchronize()  # the copy was queued a whole batch ago: normally already done
            self._decide(trainer, pl_module, step, flags.tolist(), loss, applied=True)

    def _decide(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, flags: list[float],
                last_loss: Any, applied: bool) -> None:
        """flags = [loss bad, gradient bad]. applied=True: the optimizer has already skipped the update itself."""
        if not any(flags):
            self._consecutive = 0
            return
        what = "loss" if flags[0] else "gradient"
        loss = float(last_loss) if torch.is_tensor(last_loss) else last_loss
        self._consecutive += 1
        if self.action == "skip" and self._consecutive <= self.max_consecutive_skips:
            if not applied:
                for p in pl_module.parameters():
                    p.grad = None  # AdamW leaves parameters without a gradient (and their moments) alone
            self.skipped += 1
            log.warning("non-finite %s at step %d (loss=%s): update skipped (%d skipped so far)",
                        what, step, loss, self.skipped)
            return
        path = self._save_last_good(trainer)
        why = (f"{self._consecutive} non-finite updates in a row (max_consecutive_skips="
               f"{self.max_consecutive_skips})" if self.action == "skip" else f"non-finite {what} (loss={loss})")
        raise NonFiniteLossError(
            f"{why} at step {step}; the update was not applied. Last good state (step {trainer.global_step}) saved "
            f"to {path}: re-run the same command to resume from it, e.g. with a lower objective.lr, or with "
            "callbacks.nonfinite.action=skip to skip such batches."
        )

    def _save_last_good(self, trainer: L.Trainer) -> str:
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "dirpath", None):
            path = os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
        else:
            path = os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
        trainer.save_checkpoint(path)  # collective under DDP; written by rank 0 through the CheckpointIO
        return path

    # ---- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))


class StepSeed(L.Callback):
    """Reseed torch's global RNG before each training batch from (seed, global rank, batch index across epochs).

    The diffusion time t and the masks of batch k are then a pure function of (seed, rank, k), so a run resumed
    from a checkpoint draws exactly what the uninterrupted run drew, and ranks draw different noise.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        k = trainer.fit_loop.total_batch_idx
        state = np.random.SeedSequence([self.seed, trainer.global_rank, k]).generate_state(2, np.uint64)
        torch.manual_seed(int(state[0] >> np.uint64(1)))  # manual_seed takes < 2**63


def _skips_on_device(optimizer: Any) -> bool:
    """Whether `optimizer.found_inf` makes its step a no-op on the device: torch's fused Adam/AdamW."""
    return isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and bool(optimizer.param_groups) and all(
        g.get("fused") for g in optimizer.param_groups)


# ---- config types -----------------------------------------------------------------------------------------------
# Values that are not the target's own but that seqdiff resolves before instantiating it.
SEQDIFF_VALUES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("lightning.Trainer", "precision"): ("auto",),  # seqdiff.precision.resolve_training_precision
    ("seqdiff.backbones.Transformer", "ngram_context"): ("auto",),  # seqdiff.train.build_backbone
}


def check_config_types(cfg: Any, where: str = "") -> None:
    """Check every `_target_` node's values against the target's annotated parameter types, before anything is
    built: `trainer.max_steps=abc` fails as one clear line naming the key, not deep inside Lightning or torch.

    Only what the annotations state plainly is checked (int, float, bool, str, None, Literal, unions of those,
    lists, dicts); anything else (classes, callables, unresolvable hints) is left to the constructor.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, ListConfig):
        for i, v in enumerate(cfg):
            check_config_types(v, f"{where}[{i}]")
        return
    if not isinstance(cfg, DictConfig):
        return
    hints: dict[str, Any] = {}
    target = cfg.get("_target_") if "_target_" in cfg else None
    if isinstance(target, str):
        hints = _init_hints(target)
    for key in cfg:
        path = f"{where}.{key}" if where else str(key)
        if OmegaConf.is_missing(cfg, key):
            continue
        value = cfg[key]
        if isinstance(value, (DictConfig, ListConfig)):
            check_config_types(value, path)
            continue
        hint = hints.get(str(key))
        if value in SEQDIFF_VALUES.get((str(target), str(key)), ()):
            continue  # a value seqdiff resolves before the target sees it
        if hint is not None and not _matches(value, hint):
            raise ValueError(f"config {path}={value!r}: expected {_hint_name(hint)}, got {type(value).__name__} "
                             f"(parameter of {target})")


def _init_hints(target: str) -> dict[str, Any]:
    import inspect
    import typing

    from hydra.utils import get_object

    try:
        obj = get_object(target)
        fn = obj.__init__ if inspect.isclass(obj) else obj
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations or not importable: instantiate will say so
        return {}


def _matches(value: Any, hint: Any) -> bool:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, dict) or hint in (list, tuple, dict):
        return False  # a scalar where a container is expected (containers are checked by recursion above)
    return True  # classes, callables, paths...: left to the constructor


def _hint_name(hint: Any) -> str:
    import typing

    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")

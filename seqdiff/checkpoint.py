"""Load a trained seqdiff model from a Lightning checkpoint without Lightning: `seqdiff.load(path)`.

A checkpoint written by `scripts/train.py` carries, besides the weights, `checkpoint["seqdiff"]`: the
resolved Hydra config, the tokenizer's own config (with any fitted state), the objective, the noise
schedule and the keyword arguments the backbone was built with. That is all `load` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from seqdiff.noise import LogLinearSchedule, Schedule


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a seqdiff checkpoint."""


@dataclass
class LoadedModel:
    backbone: nn.Module  # EMA weights if trained with EMA, eval mode
    tokenizer: Any
    schedule: Schedule
    config: dict
    objective: str  # "mdlm", "ar", "family" (seqdiff.diffusion.family_lightning) or "classifier"
    path: Path
    family: Any = None  # seqdiff.diffusion.families.Family of a "family" checkpoint (None for MDLM and AR)
    classes: list[str] | None = None  # class names of a class-conditional denoiser or a classifier
    process: Any = None  # the noise process a "classifier" checkpoint was trained on

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    @property
    def window(self) -> int:
        return int(self.backbone.max_len)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or "seqdiff" not in ckpt:
        raise CheckpointError(f"{path} is not a seqdiff checkpoint (no 'seqdiff' metadata)")
    return ckpt


def load(path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild backbone + tokenizer + schedule from a checkpoint written by `scripts/train.py`."""
    ckpt = read_checkpoint(path)
    meta = ckpt["seqdiff"]
    config = meta["config"] or {}
    tokenizer = instantiate(meta["tokenizer"])
    backbone = instantiate(config["model"], **meta["backbone_init"])
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in ckpt["state_dict"]) else "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("cos", "sin"))]:
        raise CheckpointError(f"{path}: weights do not match the configured backbone "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    schedule = instantiate(meta["schedule"]) if meta.get("schedule") else LogLinearSchedule()
    family = process = classes = None
    if meta.get("family"):  # issue 17: uniform noise, score entropy, class-conditional denoisers
        from seqdiff.diffusion.families import Family

        f = meta["family"]
        family = Family(instantiate(f["process"]), instantiate(f["parameterization"]), f["name"])
        classes = f.get("classes")
    if meta.get("classifier"):
        process, classes = instantiate(meta["classifier"]["process"]), meta["classifier"]["classes"]
    return LoadedModel(backbone.to(device).eval(), tokenizer, schedule, config, meta["objective"], Path(path),
                       family, classes, process)


def check_tokenizer(model: LoadedModel, tokenizer: Any, what: str = "the data") -> None:
    """Raise a clear error when a checkpoint's tokenizer differs from the one `what` was built with."""
    if model.tokenizer.config() != tokenizer.config():
        raise CheckpointError(
            f"tokenizer mismatch: checkpoint {model.path} uses {model.tokenizer.config()} but {what} uses "
            f"{tokenizer.config()}"
        )

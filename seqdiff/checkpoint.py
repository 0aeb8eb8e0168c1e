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


# Checkpoints store `_target_` paths (tokenizer, data, callbacks). Classes that moved to their domain package
# keep loading from checkpoints written before the move: old path (a class, or a module prefix) -> new path.
MOVED_TARGETS = {
    "seqdiff.tokenizers.NucleotideTokenizer": "seqdiff.dna.tokenizer.NucleotideTokenizer",
    "seqdiff.tokenizers.KmerTokenizer": "seqdiff.dna.tokenizer.KmerTokenizer",
    "seqdiff.tokenizers.nucleotide": "seqdiff.dna.tokenizer",
    "seqdiff.tokenizers.table": "seqdiff.tables.tokenizer",
    "seqdiff.tokenizers.code": "seqdiff.code.tokenizer",
    "seqdiff.data.GenomeDataModule": "seqdiff.dna.datamodule.GenomeDataModule",
    "seqdiff.data.datamodule": "seqdiff.dna.datamodule",
    "seqdiff.data.table": "seqdiff.tables.data",
    "seqdiff.data.adult": "seqdiff.tables.adult",
    "seqdiff.data.code": "seqdiff.code.data",
    "seqdiff.evaluation.timing": "seqdiff.benchmarks.timing",
}


def current_target(target: str) -> str:
    """The `_target_` a checkpoint's stored `target` names today (itself unless its class or module moved)."""
    if target in MOVED_TARGETS:
        return MOVED_TARGETS[target]
    module, _, name = target.rpartition(".")
    return f"{MOVED_TARGETS[module]}.{name}" if module in MOVED_TARGETS else target


def _current_targets(node: Any) -> Any:
    """A copy of a stored config with every `_target_` mapped through `current_target`."""
    if isinstance(node, dict):
        return {k: current_target(v) if k == "_target_" and isinstance(v, str) else _current_targets(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_current_targets(v) for v in node]
    return node


@dataclass
class LoadedModel:
    backbone: nn.Module  # EMA weights if trained with EMA, eval mode
    tokenizer: Any
    schedule: Schedule
    config: dict
    objective: str  # "mdlm" or "ar"
    path: Path

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    @property
    def window(self) -> int:
        return int(self.backbone.max_len)

    def datamodule(self, **overrides: Any) -> Any:
        """The datamodule the model was trained on: its stored `data` config with `overrides`, built with the
        checkpoint's own tokenizer (a fitted table or BPE tokenizer is reused, not fitted again)."""
        return instantiate({**self.config["data"], **overrides}, tokenizer=self.tokenizer)


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
    config = _current_targets(meta["config"] or {})
    tokenizer = instantiate(_current_targets(meta["tokenizer"]))
    backbone = instantiate(config["model"], **meta["backbone_init"])
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in ckpt["state_dict"]) else "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("cos", "sin"))]:
        raise CheckpointError(f"{path}: weights do not match the configured backbone "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    schedule = instantiate(_current_targets(meta["schedule"])) if meta.get("schedule") else LogLinearSchedule()
    return LoadedModel(backbone.to(device).eval(), tokenizer, schedule, config, meta["objective"], Path(path))


def check_tokenizer(model: LoadedModel, tokenizer: Any, what: str = "the data") -> None:
    """Raise a clear error when a checkpoint's tokenizer differs from the one `what` was built with."""
    if model.tokenizer.config() != tokenizer.config():
        raise CheckpointError(
            f"tokenizer mismatch: checkpoint {model.path} uses {model.tokenizer.config()} but {what} uses "
            f"{tokenizer.config()}"
        )

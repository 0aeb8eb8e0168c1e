"""Load a trained seqdiff model without Lightning: `seqdiff.load(path)`, safely by default.

`path` is a Lightning checkpoint (`last.ckpt`) or a folder written by `seqdiff.save_pretrained` (Hugging Face
Hub layout: safetensors weights + JSON config, see seqdiff/pretrained.py). A checkpoint written by
`scripts/train.py` carries, besides the weights, `checkpoint["seqdiff"]`: the resolved Hydra config, the
tokenizer's own config (with any fitted state), the objective, the noise schedule and the keyword arguments the
backbone was built with. That is all `load` needs.

Safety: a `.ckpt` is a pickle. It is read with `torch.load(weights_only=True)`, which rebuilds only
tensors and plain containers and refuses any other global, so a crafted file cannot run code. The `_target_`s
the metadata names are checked too (only seqdiff's own backbones, tokenizers and schedules), because
`hydra.utils.instantiate` would otherwise call whatever callable a shared file names. `trust_checkpoint=True`
(CLI: `trust_checkpoint=true`) lifts both checks for files you made yourself.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from seqdiff.noise import LogLinearSchedule, Schedule


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a seqdiff checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs code execution to load (pickled objects, foreign `_target_`s) and is not trusted."""


# Globals a seqdiff .ckpt needs beyond what `weights_only=True` allows by default. Measured with
# torch.serialization.get_unsafe_globals_in_checkpoint on checkpoints of every kind the project writes (DNA
# char/k-mer, MDLM and AR, bf16, tables, code BPE, fine-tuned classifiers): none. Lightning's optimizer,
# LR-scheduler, loop and callback states are tensors, numbers, strings and dicts, and seqdiff stores its
# metadata as plain dicts. Add a type here only if a checkpoint really needs it (tests/test_export.py
# checks that a freshly trained checkpoint still needs nothing more).
SAFE_GLOBALS: list[Any] = []

# Set by seqdiff.cli.run_cli from a CLI's `trust_checkpoint=true`, so every loader below sees it.
_TRUST: ContextVar[bool] = ContextVar("seqdiff_trust_checkpoint", default=False)


@contextlib.contextmanager
def trusted_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within this block, `load`/`read_checkpoint` default to `trust_checkpoint=trust`."""
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def is_trusted(trust_checkpoint: bool | None = None) -> bool:
    return _TRUST.get() if trust_checkpoint is None else bool(trust_checkpoint)


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
    objective: str  # "mdlm", "ar", "family" (seqdiff.diffusion.family_lightning) or "classifier"
    path: Path
    backbone_init: dict = field(default_factory=dict)  # tokenizer-derived kwargs (vocab_size, max_len, ...)
    family: Any = None  # seqdiff.diffusion.families.Family of a "family" checkpoint (None for MDLM and AR)
    classes: list[str] | None = None  # class names of a class-conditional denoiser or a classifier
    process: Any = None  # the noise process a "classifier" checkpoint was trained on

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


def read_checkpoint(path: str | Path, trust_checkpoint: bool | None = None) -> dict:
    """The checkpoint dict; `weights_only=True` unless trusted (a pickled object is refused, not executed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    trusted = is_trusted(trust_checkpoint)
    try:
        if trusted:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # not a refused global: garbage or a truncated file (nothing was run either)
            raise CheckpointError(f"cannot read checkpoint {path}: not a torch checkpoint ({_first_line(e)})") from None
        # weights_only refused a global: the file holds pickled objects
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it contains pickled Python objects that would run code when loaded "
            f"({_first_line(e)}); pass trust_checkpoint=true only if you made this file yourself") from None
    except Exception as e:  # truncated or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or "seqdiff" not in ckpt:
        raise CheckpointError(f"{path} is not a seqdiff checkpoint (no 'seqdiff' metadata)")
    if not trusted:
        check_targets(ckpt["seqdiff"], path)
    return ckpt


def _first_line(e: BaseException) -> str:
    # torch's message is a page of advice; keep the name of the refused global.
    m = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"(Unsupported operand \S+)", str(e))
    if m:
        return f"global {m.group(1)}" if "GLOBAL" in m.group(0) else m.group(1)
    return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__


# What each `_target_` in the metadata may build when the file is not trusted: seqdiff's own classes of the
# right kind, nothing else (hydra.utils.instantiate would call any importable callable, e.g. os.system).
def check_targets(meta: dict, where: str | Path) -> None:
    from seqdiff.diffusion.families import MeanParameterization, ScoreParameterization
    from seqdiff.noise.processes import NoiseProcess

    config = meta.get("config") or {}
    family, classifier = meta.get("family") or {}, meta.get("classifier") or {}
    process = (NoiseProcess, Schedule)  # a process config nests its schedule's
    kinds = [("model", config.get("model"), torch.nn.Module), ("tokenizer", meta.get("tokenizer"), None),
             ("schedule", meta.get("schedule"), Schedule), ("family process", family.get("process"), process),
             ("family parameterization", family.get("parameterization"), (MeanParameterization,
                                                                          ScoreParameterization)),
             ("classifier process", classifier.get("process"), process)]
    for name, cfg, base in kinds:
        if cfg is None:
            continue
        for target in _targets(cfg):
            if not _allowed(current_target(target), base, tokenizer=name == "tokenizer"):
                raise UnsafeCheckpointError(
                    f"refusing to load {where}: its {name} config names _target_={target!r}, which is not a "
                    f"seqdiff {name} class; pass trust_checkpoint=true only if you made this file yourself")


def _targets(cfg: Any) -> Iterator[str]:
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            if k == "_target_":
                yield str(v)
            else:
                yield from _targets(v)
    elif isinstance(cfg, list):
        for v in cfg:
            yield from _targets(v)


def _allowed(target: str, base: type | tuple[type, ...] | None, tokenizer: bool = False) -> bool:
    module, _, name = target.rpartition(".")
    # Tokenizers live in seqdiff.tokenizers or in a domain's `tokenizer` module (seqdiff.dna.tokenizer, ...).
    ours = module == "seqdiff" or module.startswith("seqdiff.")
    if tokenizer:
        ours = ours and (module.startswith("seqdiff.tokenizers") or module.endswith(".tokenizer"))
    if not ours:
        return False
    try:  # importing a seqdiff module is safe: it is this package's own code, not the file's
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and (base is None or issubclass(obj, base))


def load(path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu",
         trust_checkpoint: bool | None = None) -> LoadedModel:
    """Rebuild backbone + tokenizer + schedule from a `.ckpt` written by `scripts/train.py` or a folder written
    by `save_pretrained`. `trust_checkpoint=None` takes the CLI's setting (default: untrusted, safe)."""
    if Path(path).is_dir():
        from seqdiff.pretrained import load_pretrained

        return load_pretrained(path, device=device, trust_checkpoint=trust_checkpoint)
    ckpt = read_checkpoint(path, trust_checkpoint)
    meta = ckpt["seqdiff"]
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in ckpt["state_dict"]) else "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return build(meta, state, path, device)


def build(meta: dict, state: dict[str, torch.Tensor] | None, path: str | Path,
          device: str | torch.device = "cpu", backbone: nn.Module | None = None) -> LoadedModel:
    """LoadedModel from seqdiff metadata (checked by the caller) and backbone weights (or a loaded backbone)."""
    config = _current_targets(meta["config"] or {})
    tokenizer = instantiate(_current_targets(meta["tokenizer"]))
    if backbone is None:
        backbone = instantiate(config["model"], **meta["backbone_init"])
        missing, unexpected = backbone.load_state_dict(state or {}, strict=False)
        if unexpected or [k for k in missing if not k.endswith(("cos", "sin"))]:
            raise CheckpointError(f"{path}: weights do not match the configured backbone "
                                  f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    schedule = instantiate(_current_targets(meta["schedule"])) if meta.get("schedule") else LogLinearSchedule()
    family = process = classes = None
    if meta.get("family"):  # uniform noise, score entropy, class-conditional denoisers
        from seqdiff.diffusion.families import Family

        f = meta["family"]
        family = Family(instantiate(f["process"]), instantiate(f["parameterization"]), f["name"])
        classes = f.get("classes")
    if meta.get("classifier"):  # a noisy classifier (classifier guidance)
        process, classes = instantiate(meta["classifier"]["process"]), meta["classifier"]["classes"]
    return LoadedModel(backbone.to(device).eval(), tokenizer, schedule, config, meta["objective"], Path(path),
                       dict(meta["backbone_init"]), family, classes, process)


def check_tokenizer(model: LoadedModel, tokenizer: Any, what: str = "the data") -> None:
    """Raise a clear error when a checkpoint's tokenizer differs from the one `what` was built with."""
    if model.tokenizer.config() != tokenizer.config():
        raise CheckpointError(
            f"tokenizer mismatch: checkpoint {model.path} uses {model.tokenizer.config()} but {what} uses "
            f"{tokenizer.config()}"
        )

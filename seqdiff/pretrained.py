"""Shareable checkpoints in the Hugging Face Hub layout: `seqdiff.save_pretrained(model, DIR)`, `seqdiff.load(DIR)`.

A folder holds `model.safetensors` (the backbone's weights, EMA if the run had EMA), `config.json` (everything
needed to rebuild the model: the backbone's config and tokenizer-derived kwargs, the tokenizer's config with any
fitted state, the noise schedule, the objective and the resolved training config) and `README.md` (a model card).
`huggingface_hub`'s `PyTorchModelHubMixin` writes and reads that layout, from a local folder offline or from a Hub
repo id (`push_to_hub` works as for any mixin model). Neither file can run code: safetensors is raw tensors, and
the config's `_target_`s are checked against seqdiff's own classes before anything is built
(seqdiff.checkpoint.check_targets).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from hydra.utils import instantiate
from torch import nn

from seqdiff.checkpoint import CheckpointError, LoadedModel, build, check_targets, is_trusted

MODEL_CARD = """---
{{ card_data }}
---

A seqdiff model: a masked (absorbing-state) discrete diffusion language model.
`model.safetensors` holds the denoiser's weights, `config.json` the backbone, tokenizer, noise schedule and
training config. Load it without network access (no pickle, no code from this folder is run):

```python
import seqdiff
m = seqdiff.load("path/to/this/folder")   # m.backbone, m.tokenizer, m.schedule, m.objective
```

or pass the folder as `checkpoint=` to any seqdiff CLI (`scripts/sample.py`, `scripts/evaluate.py`, ...).
"""


class PretrainedSeqdiff(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="seqdiff",
    tags=["seqdiff", "masked-diffusion", "discrete-diffusion"],
    license="mit",
    model_card_template=MODEL_CARD,
):
    """The backbone of a trained seqdiff model plus, as JSON-able init arguments, all it takes to rebuild it.

    The mixin records the init arguments as `config.json` and the module's weights as `model.safetensors`
    (keys `backbone.*`). Use `seqdiff.save_pretrained` / `seqdiff.load` rather than this class directly.
    """

    def __init__(self, model: dict, backbone_init: dict, tokenizer: dict, objective: str,
                 schedule: dict | None = None, train_config: dict | None = None, family: dict | None = None,
                 classifier: dict | None = None) -> None:
        super().__init__()
        meta = {"config": {**(train_config or {}), "model": model}, "tokenizer": tokenizer, "schedule": schedule,
                "family": family, "classifier": classifier}
        if not is_trusted():  # config.json may come from anyone: build only seqdiff's own classes
            check_targets(meta, "config.json")
        self.backbone = instantiate(model, **backbone_init)

    def seqdiff_meta(self) -> dict:
        """The same metadata a Lightning checkpoint carries in `checkpoint["seqdiff"]`."""
        c = self._hub_mixin_config
        return {"config": {**(c.get("train_config") or {}), "model": c["model"]}, "tokenizer": c["tokenizer"],
                "objective": c["objective"], "backbone_init": c["backbone_init"], "schedule": c.get("schedule"),
                "family": c.get("family"), "classifier": c.get("classifier")}


def save_pretrained(model: LoadedModel, directory: str | Path) -> Path:
    """Write `model` (from `seqdiff.load`) as a Hub-layout folder; replaces `directory` atomically."""
    directory = Path(directory)
    config = dict(model.config)
    wrapped = PretrainedSeqdiff(
        model=config.pop("model"), backbone_init=model.backbone_init, tokenizer=model.tokenizer.config(),
        objective=model.objective, schedule=model.schedule.config(), train_config=config,
        family=None if model.family is None else {**model.family.config(), "classes": model.classes},
        classifier=None if model.process is None else {"process": model.process.config(), "classes": model.classes})
    wrapped.backbone.load_state_dict(model.backbone.state_dict())
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target, then swap it in: a crash mid-save never leaves a half-written model folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        wrapped.save_pretrained(tmp)
        old = directory.with_name(f".{directory.name}.old") if directory.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu",
                    trust_checkpoint: bool | None = None) -> LoadedModel:
    """LoadedModel from a folder written by `save_pretrained` (offline; no network)."""
    from seqdiff.checkpoint import trusted_checkpoints

    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory} is not a seqdiff model folder (no {name})")
    try:
        json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {directory / 'config.json'}: {e}") from None
    try:
        # The mixin prints "Loading weights from local directory" to stdout, which CLIs keep for results.
        with trusted_checkpoints(is_trusted(trust_checkpoint)), contextlib.redirect_stdout(sys.stderr):
            wrapped = PretrainedSeqdiff.from_pretrained(directory, strict=True, local_files_only=True)
    except (TypeError, KeyError, RuntimeError) as e:  # config.json without seqdiff's keys / weights mismatch
        raise CheckpointError(f"{directory}: not a seqdiff model folder or weights do not match its config: "
                              f"{str(e).splitlines()[0]}") from None
    return build(wrapped.seqdiff_meta(), None, directory, device, backbone=wrapped.backbone)

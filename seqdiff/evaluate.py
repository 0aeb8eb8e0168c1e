"""`evaluate(cfg)`: held-out bits/base of a checkpoint on its own split or on any FASTA (scripts/evaluate.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

import seqdiff
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import atomic_write

log = logging.getLogger("seqdiff.evaluate")


def _x0_batches(loader) -> Iterator[torch.Tensor]:
    for batch in loader:
        yield batch["x0"] if isinstance(batch, dict) else batch


def evaluate(cfg: DictConfig) -> dict:
    model = seqdiff.load(cfg.checkpoint)
    if model.objective == "classifier":
        raise ValueError(f"{cfg.checkpoint} is a classifier; bits/base needs a language model")
    tok = model.tokenizer
    if cfg.fasta is not None:
        from seqdiff.data import fasta_windows

        dataset = fasta_windows(cfg.fasta, tok, model.window * getattr(tok, "bases_per_token", 1))
        if len(dataset) == 0:
            raise ValueError(f"{cfg.fasta}: no window of {model.window} tokens that is not mostly N")
        if cfg.max_windows and len(dataset) > cfg.max_windows:  # spread evenly over the file
            keep = torch.linspace(0, len(dataset) - 1, int(cfg.max_windows)).long().tolist()
            dataset = torch.utils.data.Subset(dataset, keep)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False)
        source = str(cfg.fasta)
    else:
        if cfg.split not in ("test", "valid"):
            raise ValueError(f"split must be 'test' or 'valid', got {cfg.split!r}")
        data_cfg = dict(model.config["data"])
        data_cfg["max_eval_windows"] = int(cfg.max_windows)
        data_cfg["batch_size"] = int(cfg.batch_size)
        dm = instantiate(data_cfg, tokenizer=tok)
        dm.setup("test" if cfg.split == "test" else "validate")
        loader = dm.test_dataloader() if cfg.split == "test" else dm.val_dataloader()
        source = f"{model.config['data'].get('genome', 'data')}:{cfg.split}"
    res = evaluate_likelihood(model.backbone, tok, _x0_batches(loader), objective=model.objective,
                              schedule=model.schedule, timestep_samples=int(cfg.timestep_samples),
                              seed=int(cfg.seed), family=model.family)
    out = {"bits_per_base": res.bits_per_base, "stderr": res.stderr, "bits_per_token": res.bits_per_token,
           "tokens": res.tokens, "windows": res.windows, "timestep_samples": res.timestep_samples,
           "objective": model.family.name if model.family is not None else model.objective, "source": source, "checkpoint": str(cfg.checkpoint)}
    if cfg.out is not None:
        path = Path(cfg.out)
    else:
        name = Path(cfg.fasta).name if cfg.fasta is not None else cfg.split
        path = Path(cfg.checkpoint).resolve().parent.parent / f"eval_{name}.json"
    with atomic_write(path) as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))
    return out

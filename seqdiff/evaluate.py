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
from seqdiff.device import resolve_device
from seqdiff.evaluation.likelihood import evaluate_likelihood, mask_rate_profile
from seqdiff.io import atomic_write
from seqdiff.precision import with_precision

log = logging.getLogger("seqdiff.evaluate")


def _x0_batches(loader) -> Iterator[torch.Tensor]:
    for batch in loader:
        yield batch["x0"] if isinstance(batch, dict) else batch


def equal_length_batches(lengths: list[int], indices: list[int], batch_size: int) -> list[list[int]]:
    """Batches of `indices` (in order) whose windows all have the same token length."""
    groups: dict[int, list[int]] = {}
    for n, i in zip(lengths, indices, strict=True):
        groups.setdefault(n, []).append(i)
    return [g[a : a + batch_size] for g in groups.values() for a in range(0, len(g), batch_size)]


def evaluate(cfg: DictConfig) -> dict:
    device = resolve_device(cfg.device)
    model = seqdiff.load(cfg.checkpoint, device=device)
    if model.objective == "classifier":
        raise ValueError(f"{cfg.checkpoint} is a classifier; bits/base needs a language model")
    tok = model.tokenizer
    if cfg.fasta is not None:
        # The reader comes from the config (a DNA one by default), so this module needs no domain import.
        dataset = instantiate(cfg.fasta_windows)(cfg.fasta, tok, model.window * getattr(tok, "bases_per_token", 1))
        if len(dataset) == 0:
            raise ValueError(f"{cfg.fasta}: no window of {model.window} tokens that is not mostly N")
        if int(cfg.batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {cfg.batch_size}")
        keep = list(range(len(dataset)))
        if cfg.max_windows and len(dataset) > cfg.max_windows:  # spread evenly over the file
            keep = torch.linspace(0, len(dataset) - 1, int(cfg.max_windows)).long().tolist()
        # Windows are not padded (a record's last one is shorter): batch windows of equal length together.
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=equal_length_batches(
            [dataset.token_lengths()[i] for i in keep], keep, int(cfg.batch_size)))
        source = str(cfg.fasta)
    else:
        if cfg.split not in ("test", "valid"):
            raise ValueError(f"split must be 'test' or 'valid', got {cfg.split!r}")
        dm = model.datamodule(max_eval_windows=int(cfg.max_windows), batch_size=int(cfg.batch_size))
        dm.setup("test" if cfg.split == "test" else "validate")
        loader = dm.test_dataloader() if cfg.split == "test" else dm.val_dataloader()
        source = f"{model.config['data'].get('genome', 'data')}:{cfg.split}"
    backbone = with_precision(model.backbone, str(cfg.precision))
    res = evaluate_likelihood(backbone, tok, _x0_batches(loader), objective=model.objective,
                              schedule=model.schedule, timestep_samples=int(cfg.timestep_samples),
                              seed=int(cfg.seed), device=device, family=model.family)
    out = {"bits_per_base": res.bits_per_base, "stderr": res.stderr, "bits_per_token": res.bits_per_token,
           "tokens": res.tokens, "windows": res.windows, "timestep_samples": res.timestep_samples,
           "objective": model.family.name if model.family is not None else model.objective, "source": source,
           "precision": "bf16" if backbone is not model.backbone else "fp32",
           "checkpoint": str(cfg.checkpoint)}
    if cfg.get("mask_rates"):
        if model.objective != "mdlm" or model.family is not None:
            raise ValueError("mask_rates: the mask-rate profile is for absorbing-noise (MDLM) models, "
                             f"not {out['objective']}")
        out["mask_rate_profile"] = mask_rate_profile(backbone, tok, _x0_batches(loader), model.schedule,
                                                     list(cfg.mask_rates), seed=int(cfg.seed), device=device)
        for row in out["mask_rate_profile"]:
            log.info("mask rate %.2f: %.4f bits per masked base", row["mask_rate"], row["bits_per_masked_base"])
    if cfg.out is not None:
        path = Path(cfg.out)
    else:
        name = Path(cfg.fasta).name if cfg.fasta is not None else cfg.split
        path = Path(cfg.checkpoint).resolve().parent.parent / f"eval_{name}.json"
    with atomic_write(path) as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))
    return out

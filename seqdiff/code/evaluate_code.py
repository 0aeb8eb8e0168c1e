"""`evaluate_code(cfg)` (scripts/evaluate_code.py, configs/evaluate_code.yaml): code infilling of a diffusion
and/or an autoregressive checkpoint on held-out files, plus bits/token.

    python scripts/evaluate_code.py diffusion=CKPT autoregressive=CKPT out=PREFIX

Writes PREFIX.json and PREFIX.md (see seqdiff/code/metrics.py for the metrics).
"""

import json
import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqdiff.checkpoint import check_tokenizer, load
from seqdiff.code.data import read_source
from seqdiff.code.metrics import (
    evaluate_infilling,
    make_holes,
    markdown_table,
    records_as_dicts,
    summarize,
)
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import write_text

log = logging.getLogger("seqdiff.evaluate_code")


def evaluate_code(cfg: DictConfig) -> dict:
    paths = {"diffusion": cfg.diffusion, "autoregressive": cfg.autoregressive}
    loaded = {name: load(p) for name, p in paths.items() if p}
    if not loaded:
        raise ValueError("give at least one checkpoint: diffusion=PATH and/or autoregressive=PATH")
    first_name, first = next(iter(loaded.items()))
    for m in loaded.values():  # both models must read the same tokens
        check_tokenizer(m, first.tokenizer, f"the {first_name} checkpoint")
    tokenizer = first.tokenizer
    datamodule = first.datamodule()
    if cfg.split not in datamodule.files:
        raise ValueError(f"split must be one of {list(datamodule.files)}, got {cfg.split!r}")
    files = {}
    for rel, path in zip(datamodule.files[cfg.split], datamodule.paths(cfg.split), strict=True):
        try:
            files[rel] = read_source(path)
        except ValueError:
            continue
    window = min(m.window for m in loaded.values())
    tasks = make_holes(files, tokenizer, cfg.n_single, cfg.n_multi, cfg.max_lines, cfg.budget_per_line, window,
                       cfg.seed)
    log.info("%d holes from %d %s files", len(tasks), len(files), cfg.split)

    models = {name: (m.backbone, m.tokenizer, m.objective) for name, m in loaded.items()}
    records = evaluate_infilling(models, tasks, list(cfg.modes), cfg.budget_per_line, progress=True)
    rows = summarize(records)

    bits = {}
    ds = datamodule.dataset(cfg.split)
    n = min(cfg.likelihood_windows, len(ds))
    batches = [torch.stack([ds[j]["x0"] for j in range(i, min(i + 16, n))]) for i in range(0, n, 16)]
    for name, m in loaded.items():
        res = evaluate_likelihood(m.backbone, tokenizer, batches, m.objective, m.schedule, cfg.timestep_samples,
                                  cfg.seed, progress=False)
        bits[name] = {"bits_per_token": res.bits_per_token, "stderr": res.stderr, "tokens": res.tokens,
                      "bound": m.objective == "mdlm"}
    params = {name: sum(p.numel() for p in m.backbone.parameters()) for name, m in loaded.items()}
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "checkpoints": {k: str(v.path) for k, v in loaded.items()},
        "parameters": params,
        "holes": {"single": sum(t.kind == "single" for t in tasks), "multi": sum(t.kind == "multi" for t in tasks),
                  "files": len({t.file for t in tasks})},
        "bits_per_token": bits,
        "summary": rows,
        "records": records_as_dicts(records),
        "torch_threads": torch.get_num_threads(),
    }
    out = Path(cfg.out)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=1, default=lambda x: None if
                                                    isinstance(x, float) and math.isnan(x) else str(x)) + "\n")
    table = markdown_table(rows, bits)
    write_text(out.with_suffix(".md"), table)
    print(table)
    return result

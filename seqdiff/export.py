"""`export(cfg)`: convert a training checkpoint into a shareable model folder (safetensors + JSON config).

Kept apart from the `@hydra.main` wrapper in scripts/export.py so tests can call it with a composed config.
"""

from __future__ import annotations

import json
from typing import Any

from seqdiff.checkpoint import load
from seqdiff.pretrained import save_pretrained


def export(cfg: Any) -> dict[str, Any]:
    """Load `cfg.checkpoint` (a `.ckpt` or a model folder) and write it to `cfg.out` in the Hub layout.

    Prints and returns a summary: the files written and the parameter count."""
    model = load(cfg.checkpoint, use_ema=cfg.use_ema)
    out = save_pretrained(model, cfg.out)
    summary = {"checkpoint": str(cfg.checkpoint), "out": str(out), "objective": model.objective,
               "parameters": sum(p.numel() for p in model.backbone.parameters()),
               "files": sorted(p.name for p in out.iterdir())}
    print(json.dumps(summary))
    return summary

"""`plot_curves(cfg)` (scripts/plot_curves.py, configs/plot_curves.yaml): a training run's learning curves from
whichever logger it used (csv, tensorboard, wandb), read and drawn by seqdiff/evaluation/curves.py.

    python scripts/plot_curves.py run=outputs/demo      # -> outputs/demo/learning_curve.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqdiff.evaluation import curves


def plot_curves(cfg: Any) -> Path:
    """`cfg.run` (run dir or log file) -> `cfg.out` (default <run dir>/learning_curve.png). Prints the output
    path and each metric's last value."""
    table = curves.read_curves(cfg.run)
    run = Path(cfg.run)
    out = Path(cfg.out) if cfg.out else (run if run.is_dir() else run.parent) / "learning_curve.png"
    curves.plot_curves(table, out, list(cfg.metrics), cfg.title)
    last = table.groupby("metric").last()
    print(f"{out}: " + ", ".join(f"{m} {last.loc[m, 'value']:.4f} at step {last.loc[m, 'step']}"
                                 for m in cfg.metrics))
    return out

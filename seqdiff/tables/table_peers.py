"""Peer table generators (CTGAN and TVAE from the `ctgan` package, CPU) trained on the same split as a seqdiff
table model, under a wall-clock budget, so `scripts/evaluate_table.py` scores all of them with the same code.

    python scripts/table_peers.py checkpoint=runs/adult/checkpoints/last.ckpt out_dir=runs/adult_peers

Frames are typed as `seqdiff.tables.data.read_table` returns them (numbers float with NaN missing, categories
str with None missing). The peers get the training split with categorical missing values as their own category
and, for numeric columns with missing values, a median fill plus a missing-indicator column (CTGAN/TVAE refuse
NaN); sampled rows are mapped back, integer columns rounded. `ctgan` is optional: `pip install 'seqdiff[peers]'`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import torch

from seqdiff.io import write_text
from seqdiff.tables.data import write_table
from seqdiff.tables.sampling import load_table_model

log = logging.getLogger("seqdiff.table_peers")

MISSING = "<missing>"
PEERS = ("ctgan", "tvae")


def _indicator(c: str) -> str:
    return f"{c}::missing"


def to_peer_frame(train: pd.DataFrame, kinds: Mapping[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """(frame without NaN, its discrete columns) for CTGAN/TVAE."""
    cols, discrete = {}, []
    for c, k in kinds.items():
        if k == "categorical":
            cols[c] = train[c].astype(object).where(train[c].notna(), MISSING).astype(str)
            discrete.append(c)
        else:
            v = train[c].astype(float)
            if v.isna().any():
                cols[_indicator(c)] = v.isna().map({True: "yes", False: "no"})
                discrete.append(_indicator(c))
            cols[c] = v.fillna(v.median())
    return pd.DataFrame(cols, index=train.index), discrete


def from_peer_frame(rows: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Sampled peer rows back to seqdiff's typing (missing restored, integers rounded)."""
    out = {}
    for c, k in kinds.items():
        if k == "categorical":
            out[c] = rows[c].astype(str).where(rows[c].astype(str) != MISSING, None).astype(object)
        else:
            v = rows[c].astype(float)
            if k == "integer":
                v = v.round()
            if _indicator(c) in rows:
                v = v.where(rows[_indicator(c)].astype(str) != "yes")
            out[c] = v
    return pd.DataFrame(out)


class _Deadline:
    """Stands in for ctgan's `tqdm(range(epochs))` epoch loop: stops starting epochs once the wall-clock budget
    (counted from fit's start, so preprocessing counts) is spent. Counts the epochs it let run."""

    def __init__(self, iterable: Any, start: float, budget: float | None) -> None:
        self.iterable, self.start, self.budget, self.epochs = iterable, start, budget, 0

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            if self.budget is not None and self.epochs > 0 and time.perf_counter() - self.start >= self.budget:
                return
            self.epochs += 1
            yield item

    def set_description(self, *_: Any, **__: Any) -> None:  # the tqdm method ctgan calls when verbose
        pass


@contextmanager
def _budgeted(module: Any, budget: float | None) -> Iterator[list[_Deadline]]:
    if not hasattr(module, "tqdm"):  # the epoch loop this relies on changed: refuse rather than mis-budget
        raise RuntimeError(f"{module.__name__} has no tqdm epoch loop; this ctgan version is not supported")
    loops: list[_Deadline] = []
    start = time.perf_counter()

    def factory(iterable: Any, *_: Any, **__: Any) -> _Deadline:
        loops.append(_Deadline(iterable, start, budget))
        return loops[-1]

    with mock.patch.object(module, "tqdm", factory):
        yield loops


def fit_peer(name: str, train: pd.DataFrame, kinds: Mapping[str, str], epochs: int = 300,
             budget_seconds: float | None = None, batch_size: int = 500, seed: int = 0) -> tuple[Any, dict]:
    """Fit CTGAN or TVAE (the package's defaults otherwise) for `epochs` epochs or until `budget_seconds` of
    wall-clock (preprocessing included; the epoch in progress finishes). Returns (model, {epochs, seconds})."""
    if name not in PEERS:
        raise ValueError(f"peer must be one of {PEERS}, got {name!r}")
    try:
        import ctgan.synthesizers.ctgan as ctgan_module
        import ctgan.synthesizers.tvae as tvae_module
        from ctgan import CTGAN, TVAE
    except ImportError:
        msg = "the ctgan package is not installed: pip install 'seqdiff[peers]' (needs pandas < 3)"
        raise ImportError(msg) from None
    frame, discrete = to_peer_frame(train, kinds)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = (CTGAN if name == "ctgan" else TVAE)(epochs=epochs, batch_size=batch_size, cuda=False)
    t0 = time.perf_counter()
    with _budgeted(ctgan_module if name == "ctgan" else tvae_module, budget_seconds) as loops:
        model.fit(frame, discrete_columns=discrete)
    seconds = time.perf_counter() - t0
    done = loops[0].epochs if loops else epochs
    log.info("%s: %d epochs in %.1f s (budget %s s)", name, done, seconds, budget_seconds)
    return model, {"epochs": done, "fit_seconds": seconds, "max_epochs": epochs, "budget_seconds": budget_seconds,
                   "batch_size": batch_size}


def sample_peer(model: Any, num_rows: int, kinds: Mapping[str, str], seed: int = 0) -> pd.DataFrame:
    model.set_random_state(seed)
    return from_peer_frame(model.sample(num_rows), kinds)


def table_peers(cfg: Any) -> dict:
    """`table_peers(cfg)` (scripts/table_peers.py, configs/table_peers.yaml): fit each peer on the checkpoint's
    own training split, write `<out_dir>/<peer>.csv` (cfg.num_rows rows) and `<out_dir>/peers.json` (budget,
    epochs, seconds)."""
    model = load_table_model(cfg.checkpoint)
    tok = model.tokenizer
    data = model.datamodule()  # same split (and fitted tokenizer) as the model
    kinds = {c: tok.kinds[c] for c in tok.names}
    train = data.train_frame[tok.names]
    budget = cfg.budget_seconds
    if budget == "from_run":  # the seqdiff run's own training wall-clock, from its metrics.json
        metrics = Path(cfg.checkpoint).parent.parent / "metrics.json"
        if not metrics.is_file():
            raise FileNotFoundError(f"budget_seconds=from_run needs {metrics}; give a number of seconds instead")
        budget = float(json.loads(metrics.read_text())["fit_seconds"])
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"checkpoint": str(cfg.checkpoint), "train_rows": len(train), "peers": {}}
    for name in cfg.peers:
        peer, info = fit_peer(name, train, kinds, int(cfg.epochs), None if budget is None else float(budget),
                              int(cfg.batch_size), int(cfg.seed))
        t0 = time.perf_counter()
        rows = sample_peer(peer, int(cfg.num_rows), kinds, int(cfg.seed))
        info["sample_seconds"] = time.perf_counter() - t0
        write_table(rows, kinds, out_dir / f"{name}.csv")  # atomic: never a half-written CSV
        info["synthetic"] = str(out_dir / f"{name}.csv")
        summary["peers"][name] = info
        print(f"{name}: {info['epochs']} epochs in {info['fit_seconds']:.1f} s -> {info['synthetic']}")
    write_text(out_dir / "peers.json", json.dumps(summary, indent=2) + "\n")
    return summary

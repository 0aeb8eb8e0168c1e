"""`tables(cfg)` (scripts/tables.py): synthetic rows and imputation with a trained table model.

    python scripts/tables.py sample checkpoint=PATH num_rows=N out=FILE.csv
    python scripts/tables.py impute checkpoint=PATH input=FILE.csv out=FILE.csv

Imputation fills the missing cells (empty, `?`, `NA`) and writes every given cell exactly as it was read.
"""

from __future__ import annotations

import logging

import pandas as pd
from omegaconf import DictConfig

from seqdiff.device import resolve_device
from seqdiff.io import write_csv
from seqdiff.tables.data import format_cell, read_cells, type_frame, write_table
from seqdiff.tables.sampling import impute_frame, load_table_model, sample_frame

log = logging.getLogger("seqdiff.tables")


def sample(cfg: DictConfig) -> pd.DataFrame:
    model = load_table_model(cfg.checkpoint, resolve_device(cfg.device))
    frame = sample_frame(model.backbone, model.tokenizer, int(cfg.num_rows), cfg.steps, model.schedule,
                         cfg.batch_size, cfg.seed, cfg.missing, cfg.progress)
    write_table(frame, model.tokenizer.kinds, cfg.out, cfg.na_rep)
    log.info("wrote %d synthetic rows to %s", len(frame), cfg.out)
    return frame


def impute(cfg: DictConfig) -> pd.DataFrame:
    if cfg.input is None:
        raise ValueError("impute needs input=FILE.csv")
    model = load_table_model(cfg.checkpoint, resolve_device(cfg.device))
    tok = model.tokenizer
    raw = read_cells(cfg.input, list(cfg.missing_values))
    absent = [c for c in tok.names if c not in raw.columns]
    if absent:
        raise ValueError(f"{cfg.input}: lacks the model's column(s) {absent}; the model has {tok.names}")
    typed, _ = type_frame(raw[tok.names], tok.kinds, source=str(cfg.input))
    columns = list(cfg.columns) if cfg.columns is not None else None
    filled = impute_frame(model.backbone, tok, typed, columns, cfg.num_draws, cfg.steps, model.schedule,
                          cfg.batch_size, cfg.seed, cfg.progress)
    out = raw.copy()  # given cells: exactly the text that was read
    for c in tok.names:
        hole = typed[c].isna() & filled[c].notna()
        out.loc[hole, c] = [format_cell(v, tok.kinds[c], cfg.na_rep) for v in filled.loc[hole, c]]
    n = int(sum((typed[c].isna() & filled[c].notna()).sum() for c in tok.names))
    write_csv(out.fillna(cfg.na_rep), cfg.out, index=False)
    log.info("imputed %d cells in %d rows, wrote %s", n, len(out), cfg.out)
    return out


COMMANDS = {"sample": sample, "impute": impute}


def tables(cfg: DictConfig) -> pd.DataFrame:
    """Run `cfg.command` (sample | impute); the CLI also takes the command as its first word."""
    if cfg.command not in COMMANDS:
        raise ValueError(f"unknown command {cfg.command!r}: use one of {sorted(COMMANDS)}")
    return COMMANDS[cfg.command](cfg)

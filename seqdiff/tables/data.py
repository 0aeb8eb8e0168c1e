"""Tables from CSV/Parquet: strict parsing, schema inferred or given, and `TableDataModule` (one row = one
example of `window = n_columns` tokens, batches `{"x0": LongTensor[B, n_cols]}`).

Parsing is strict: a row with the wrong number of fields, or text in a numeric column, raises a ValueError
naming the file line and the column. Cells equal to one of `missing_values` (default: empty, `?`, `NA`) are
missing. Frames returned here are indexed by their file line number (index name "line"), so later errors
(e.g. the tokenizer's) name the same line.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from seqdiff.io import write_csv
from seqdiff.tables.tokenizer import DEFAULT_MISSING, KINDS, TableTokenizer, infer_kind, parse_number

log = logging.getLogger("seqdiff.tables.data")


def read_cells(
    path: str | Path,
    missing_values: Sequence[str] = DEFAULT_MISSING,
    delimiter: str | None = None,
    column_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV (or TSV) into a frame of str cells (None = missing) indexed by file line, checking every
    row has one field per column. The first line is the header unless `column_names` is given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    delimiter = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    missing = {m.strip() for m in missing_values}
    rows, lines = [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        header = list(column_names) if column_names is not None else next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file (no header line)")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes or "" in header:
            raise ValueError(f"{path}: header has duplicate or empty column names: {dupes or ['']}")
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(
                    f"{path} line {reader.line_num}: expected {len(header)} fields "
                    f"({', '.join(header)}), got {len(row)}: {delimiter.join(row)[:120]!r}"
                )
            rows.append([None if (c := v.strip()) in missing else c for v in row])
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return pd.DataFrame(rows, columns=header, index=pd.Index(lines, name="line"), dtype=object)


def read_table(
    path: str | Path,
    schema: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    missing_values: Sequence[str] = DEFAULT_MISSING,
    delimiter: str | None = None,
    column_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read and type a CSV/TSV/Parquet table. Returns (frame, kinds): numeric/integer columns as float64 with
    NaN for missing, categorical columns as object str with None. schema: column -> categorical | numeric |
    integer for any subset of columns; the rest are inferred (all cells numbers -> numeric, else categorical)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        if not path.is_file():
            raise FileNotFoundError(f"table not found: {path}")
        raw = pd.read_parquet(path)  # needs pyarrow or fastparquet
        raw.index = pd.Index(np.arange(len(raw)), name="row")
        raw = raw.map(
            lambda v: (
                None
                if v is None
                or (isinstance(v, float) and np.isnan(v))
                or (isinstance(v, str) and v.strip() in missing_values)
                else v
            )
        )
    else:
        raw = read_cells(path, missing_values, delimiter, column_names)
    schema = dict(schema or {})
    absent = [c for c in [*schema, *drop] if c not in raw.columns]
    if absent:
        raise ValueError(
            f"{path}: schema/drop name column(s) {absent} not in the table; columns: {list(raw.columns)}"
        )
    raw = raw.drop(columns=list(drop))
    return type_frame(raw, schema, source=str(path))


def type_frame(
    raw: pd.DataFrame, schema: Mapping[str, str], source: str = "table"
) -> tuple[pd.DataFrame, dict]:
    """Convert object cells to typed columns (see read_table); text in a numeric column names line and column."""
    out, kinds = {}, {}
    for name in raw.columns:
        s = raw[name]
        kind = schema.get(name)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"{source}: column {name!r}: schema kind must be one of {KINDS}, got {kind!r}")
        if kind is None:
            num = pd.to_numeric(s, errors="coerce")
            numeric = s.notna().any() and not (num.isna() & s.notna()).any()
            kind = infer_kind(num) if numeric else "categorical"
        if kind == "categorical":
            out[name] = s.map(
                lambda v: (
                    None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
                )
            ).astype(object)
        else:
            vals = np.array(
                [
                    np.nan if v is None else parse_number(v, line, name, f"{source} {s.index.name}")
                    for line, v in s.items()
                ],
                dtype=np.float64,
            )
            if kind == "integer":
                frac = np.flatnonzero(~np.isnan(vals) & (vals != np.round(vals)))
                if frac.size:
                    raise ValueError(
                        f"{source} {s.index.name} {s.index[frac[0]]}, column {name!r}: "
                        f"{s.iloc[frac[0]]!r} is not an integer (schema says integer)"
                    )
            out[name] = vals
        kinds[name] = kind
    return pd.DataFrame(out, index=raw.index), kinds


def format_cell(value: object, kind: str, na_rep: str = "") -> str:
    """Text of one cell: integers without a decimal point, missing as na_rep."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return na_rep
    if kind == "integer":
        return str(int(round(float(value))))
    return repr(float(value)) if kind == "numeric" else str(value)


def write_table(frame: pd.DataFrame, kinds: Mapping[str, str], path: str | Path, na_rep: str = "") -> None:
    """Write a typed frame as CSV (columns not in kinds are written as text)."""
    cells = pd.DataFrame({c: [format_cell(v, kinds.get(c, "categorical"), na_rep) for v in frame[c]]
                          for c in frame.columns})
    write_csv(cells, path, index=False)


class RowDataset(Dataset):
    def __init__(self, x0: torch.Tensor) -> None:
        self.x0 = x0

    def __len__(self) -> int:
        return len(self.x0)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x0": self.x0[i]}


class TableDataModule(L.LightningDataModule):
    """A table split into train / valid / test, tokenized one token per cell. Fits the tokenizer on the
    training split (unless it is already fitted, e.g. loaded from a checkpoint).

    test_path: a separate test table (e.g. Adult's published split); otherwise `test_fraction` of `path` is
    held out. valid_fraction of the training rows is held out for validation (not used to fit). target: the
    column ML-efficacy evaluation predicts (kept for evaluation; it is modelled like any other column).
    """

    def __init__(
        self,
        path: str,
        tokenizer: TableTokenizer,
        target: str | None = None,
        test_path: str | None = None,
        schema: Mapping[str, str] | None = None,
        drop: Sequence[str] = (),
        missing_values: Sequence[str] = DEFAULT_MISSING,
        delimiter: str | None = None,
        test_fraction: float = 0.2,
        valid_fraction: float = 0.05,
        max_train_rows: int | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, TableTokenizer):
            raise TypeError(
                f"TableDataModule needs a TableTokenizer (tokenizer=table), got {type(tokenizer).__name__}"
            )
        self.tokenizer, self.target = tokenizer, target
        self.batch_size, self.num_workers = batch_size, num_workers
        read = dict(drop=list(drop), missing_values=list(missing_values), delimiter=delimiter)
        frame, kinds = read_table(path, dict(schema or {}), **read)
        rng = np.random.default_rng(seed)
        if test_path is not None:
            test, _ = read_table(test_path, kinds, **read)  # the training kinds: text in numbers is an error
            if list(test.columns) != list(frame.columns):
                raise ValueError(
                    f"{test_path}: columns {list(test.columns)} differ from {path}: {list(frame.columns)}"
                )
        else:
            perm = rng.permutation(len(frame))
            n_test = int(round(test_fraction * len(frame)))
            test, frame = frame.iloc[perm[:n_test]], frame.iloc[perm[n_test:]]
        perm = rng.permutation(len(frame))
        n_valid = max(int(round(valid_fraction * len(frame))), 1)
        valid, train = frame.iloc[perm[:n_valid]], frame.iloc[perm[n_valid:]].sort_index()
        if max_train_rows is not None:
            train = train.iloc[:max_train_rows]
        if target is not None and target not in train.columns:
            raise ValueError(f"target column {target!r} not in the table; columns: {list(train.columns)}")
        self.kinds = kinds
        self.train_frame, self.valid_frame, self.test_frame = train, valid, test
        if tokenizer.fitted:
            if tokenizer.names != list(train.columns):
                raise ValueError(
                    f"the tokenizer was fitted on columns {tokenizer.names}, the table has "
                    f"{list(train.columns)}"
                )
        else:
            tokenizer.fit(train, kinds)
        self.window = tokenizer.n_columns
        self._x0 = {
            name: torch.from_numpy(tokenizer.encode_frame(df))
            for name, df in (("train", train), ("valid", valid), ("test", test))
        }
        log.info(
            "table %s: %d train / %d valid / %d test rows, %d columns, vocab %d",
            path,
            len(train),
            len(valid),
            len(test),
            self.window,
            tokenizer.vocab_size,
        )

    def tokens(self, split: str) -> torch.Tensor:
        """LongTensor[N, C] of a split (train | valid | test)."""
        return self._x0[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            RowDataset(self._x0[split]),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(self._x0[split]) > self.batch_size,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

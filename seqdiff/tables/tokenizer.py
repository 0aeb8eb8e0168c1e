"""TableTokenizer: one token per cell of a mixed-type table, per-column vocabulary blocks in one global vocab.

Layout of the vocabulary (V = 5 + sum of block sizes):
    0..4                   [PAD] [MASK] [BOS] [EOS] [UNK] (shared specials; [UNK] = rare/unseen category)
    block of column c      <c:missing>, then its values:
                           categorical: one token per category seen >= min_count times in the training split
                           numeric:     one token per "atom" (a value holding >= 1/num_bins of the column, e.g.
                                        capital-gain = 0, or every value when there are few distinct ones),
                                        then quantile intervals of the remaining values
The denoiser tells columns apart by position (learned absolute position embeddings = column embeddings);
`column_allowed()` gives the alphabet of each column so samplers only draw a column's own tokens.

Decoding numbers: an atom decodes to itself; an interval decodes to a value inside it, either its training
median (deterministic) or a draw from a piecewise-linear inverse CDF through `knots` quantiles of its
training values (when a numpy Generator is passed). Integer columns stay integral. Out-of-range numbers fall
into the first/last interval (documented fallback); unseen categories become [UNK], which decodes to the most
common rare category of that column (or `unk_label` if the column had none).

The fitted state is a JSON string inside `config()`, so `hydra.utils.instantiate(tok.config())` rebuilds an
identical tokenizer from a checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdiff.tokenizers.base import SPECIAL_TOKENS

log = logging.getLogger("seqdiff.tables.tokenizer")

KINDS = ("categorical", "numeric", "integer")
PAD_ID, MASK_ID, BOS_ID, EOS_ID, UNK_ID = range(5)
DEFAULT_MISSING = ("", "?", "NA")


def parse_number(value: Any, row: Any, column: str, row_name: str | None = None) -> float:
    """float(value), or a ValueError that names the row (its index label, e.g. the file line) and column."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{row_name or 'row'} {row}, column {column!r}: cannot parse {value!r} as a number "
            f"(numeric column; give data.schema={{{column}: categorical}} to treat it as text)"
        ) from None


class TableTokenizer:
    """Fit on the training split with `fit(df)`; then `encode_frame(df) -> int64[N, C]` and `decode_frame`."""

    def __init__(
        self,
        num_bins: int = 32,
        min_count: int = 5,
        knots: int = 9,
        unk_label: str = "[UNK]",
        state: str | None = None,
    ) -> None:
        if num_bins < 1 or min_count < 1 or knots < 2:
            raise ValueError(
                f"need num_bins >= 1, min_count >= 1, knots >= 2 (got {num_bins}, {min_count}, {knots})"
            )
        self.num_bins, self.min_count, self.knots, self.unk_label = num_bins, min_count, knots, unk_label
        self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.unk_id = (
            PAD_ID,
            MASK_ID,
            BOS_ID,
            EOS_ID,
            UNK_ID,
        )
        self.columns: list[dict] = []
        if state is not None:
            self._set_state(json.loads(state)["columns"])

    # ---- fitting ------------------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return bool(self.columns)

    def fit(self, df: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> TableTokenizer:
        """Fit per-column vocabularies on the training split. kinds: column -> categorical|numeric|integer
        (default: inferred from dtypes: numbers -> numeric, integral numbers -> integer, else categorical)."""
        if df.shape[1] == 0 or df.shape[0] == 0:
            raise ValueError(f"cannot fit a table tokenizer on an empty table (shape {df.shape})")
        kinds = dict(kinds or {})
        unknown = set(kinds) - set(df.columns)
        if unknown:
            raise ValueError(f"schema names columns not in the table: {sorted(unknown)}")
        cols = []
        for name in df.columns:
            s = df[name]
            if s.isna().all():
                raise ValueError(
                    f"column {name!r} is entirely missing in the training split: drop it "
                    f"(data.drop=[{name}]) or fill it"
                )
            kind = kinds.get(name) or infer_kind(s)
            if kind not in KINDS:
                raise ValueError(f"column {name!r}: kind must be one of {KINDS}, got {kind!r}")
            cols.append(
                self._fit_categorical(name, s)
                if kind == "categorical"
                else self._fit_numeric(name, s, kind == "integer")
            )
        self._set_state(cols)
        return self

    def _fit_categorical(self, name: str, s: pd.Series) -> dict:
        counts = s.dropna().astype(str).value_counts()
        keep = counts[counts >= self.min_count]
        rare = counts[counts < self.min_count]
        return {
            "name": str(name),
            "kind": "categorical",
            "categories": sorted(keep.index.tolist()),
            "rare": rare.index.tolist(),
        }  # rare: most common first; rare[0] is what [UNK] decodes to

    def _fit_numeric(self, name: str, s: pd.Series, integer: bool) -> dict:
        v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(np.float64)
        bad = s.notna() & pd.to_numeric(s, errors="coerce").isna()
        if bad.any():
            i = bad.to_numpy().nonzero()[0][0]
            parse_number(s.iloc[i], s.index[i], name, s.index.name)
        if integer and not np.all(v == np.round(v)):
            i = int(np.flatnonzero(v != np.round(v))[0])
            raise ValueError(f"column {name!r} is declared integer but holds {v[i]!r}")
        uniq, counts = np.unique(v, return_counts=True)
        if len(uniq) <= self.num_bins:  # few distinct values: every value is its own token (exact round trip)
            atoms = uniq
        else:  # values holding >= 1/num_bins of the column (point masses such as capital-gain = 0)
            atoms = uniq[counts >= len(v) / self.num_bins]
        rest = v[~np.isin(v, atoms)]
        edges: np.ndarray = np.empty(0)
        intervals: list[list[float]] = []
        if rest.size:
            n_int = max(self.num_bins - len(atoms), 1)
            # 'lower' keeps edges on data values, so every interval [e_j, e_j+1) holds at least e_j.
            edges = np.unique(np.quantile(rest, np.linspace(0, 1, n_int + 1)[1:-1], method="lower"))
            edges = edges[edges > rest.min()]
            which = np.searchsorted(edges, rest, side="right")
            for j in range(len(edges) + 1):
                vals = rest[which == j]
                intervals.append(np.quantile(vals, np.linspace(0, 1, self.knots)).tolist())
        return {
            "name": str(name),
            "kind": "integer" if integer else "numeric",
            "atoms": atoms.tolist(),
            "edges": edges.tolist(),
            "knots": intervals,
        }

    def _set_state(self, cols: Sequence[dict]) -> None:
        self.columns = [dict(c) for c in cols]
        offset = len(SPECIAL_TOKENS)
        self._offsets, self._cat_index = [], []
        for c in self.columns:
            self._offsets.append(offset)
            n = len(c["categories"]) if c["kind"] == "categorical" else len(c["atoms"]) + len(c["knots"])
            c["_size"] = 1 + n  # + missing token
            offset += c["_size"]
            self._cat_index.append(
                {v: i for i, v in enumerate(c["categories"])} if c["kind"] == "categorical" else None
            )
        self.vocab_size = offset
        self.column_of = torch.full((offset,), -1, dtype=torch.long)  # token -> column (-1: special)
        for j, (o, c) in enumerate(zip(self._offsets, self.columns, strict=True)):
            self.column_of[o : o + c["_size"]] = j

    # ---- protocol -----------------------------------------------------------------------------------------
    def config(self) -> dict:
        state = None
        if self.fitted:
            state = json.dumps(
                {"columns": [{k: v for k, v in c.items() if not k.startswith("_")} for c in self.columns]}
            )
        return {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "num_bins": self.num_bins,
            "min_count": self.min_count,
            "knots": self.knots,
            "unk_label": self.unk_label,
            "state": state,
        }

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("TableTokenizer is not fitted: call fit(train_frame) (the datamodule does this)")

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def kinds(self) -> dict[str, str]:
        return {c["name"]: c["kind"] for c in self.columns}

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def missing_ids(self) -> torch.Tensor:
        """LongTensor[C]: the missing-value token of each column."""
        return torch.tensor(self._offsets, dtype=torch.long)

    def column_allowed(self, missing: bool = True) -> torch.Tensor:
        """BoolTensor[C, V]: tokens column c may take: its block (missing token optional), plus [UNK] for a
        categorical column that had rare categories (the only columns whose [UNK] the model was trained on)."""
        self._require_fitted()
        allowed = self.column_of.unsqueeze(0) == torch.arange(self.n_columns).unsqueeze(1)
        for j, c in enumerate(self.columns):
            allowed[j, self.unk_id] = c["kind"] == "categorical" and bool(c["rare"])
            allowed[j, self._offsets[j]] = missing
        return allowed

    def encode(self, text: str) -> list[int]:
        """One CSV line (cells in column order; empty, ? and NA are missing) -> C token ids."""
        cells = next(csv.reader([text], skipinitialspace=True))
        if len(cells) != self.n_columns:
            raise ValueError(f"expected {self.n_columns} cells ({', '.join(self.names)}), got {len(cells)}")
        row = {
            n: (None if v.strip() in DEFAULT_MISSING else v.strip())
            for n, v in zip(self.names, cells, strict=True)
        }
        return self.encode_frame(pd.DataFrame([row])).tolist()[0]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """C token ids -> one CSV line (interval tokens decode to their training median; missing -> empty)."""
        arr = np.asarray(torch.as_tensor(ids), dtype=np.int64).reshape(1, -1)
        df = self.decode_frame(arr)
        out = []
        for v in df.iloc[0].tolist():
            out.append("" if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v))
        buf: list[str] = []
        csv.writer(_ListWriter(buf), lineterminator="").writerow(out)
        return "".join(buf)

    # ---- frames -------------------------------------------------------------------------------------------
    def encode_frame(self, df: pd.DataFrame) -> np.ndarray:
        """DataFrame (numeric columns as numbers or numeric strings, missing as NaN/None) -> int64[N, C]."""
        self._require_fitted()
        absent = [n for n in self.names if n not in df.columns]
        if absent:
            raise ValueError(f"table lacks the tokenizer's column(s) {absent}; it has {list(df.columns)}")
        out = np.empty((len(df), self.n_columns), dtype=np.int64)
        for j, c in enumerate(self.columns):
            s = df[c["name"]]
            miss = s.isna().to_numpy()
            o = self._offsets[j]
            if c["kind"] == "categorical":
                idx = self._cat_index[j]
                vals = s.astype(object).where(~miss, None).tolist()
                ids = [
                    o if m else o + 1 + idx[str(v)] if str(v) in idx else UNK_ID
                    for v, m in zip(vals, miss, strict=True)
                ]
                out[:, j] = ids
                n_unk = sum(1 for i in ids if i == UNK_ID)
                unseen = {str(v) for v, i in zip(vals, ids, strict=True) if i == UNK_ID} - set(c["rare"])
                if unseen:
                    log.warning(
                        "column %r: %d value(s) unseen at fit time -> [UNK] (e.g. %r)",
                        c["name"],
                        n_unk,
                        sorted(unseen)[:3],
                    )
            else:
                v = self._numbers(s, c["name"], miss)
                out[:, j] = self._numeric_ids(c, v, o)
                out[miss, j] = o
        return out

    @staticmethod
    def _numbers(s: pd.Series, name: str, miss: np.ndarray) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(s):
            return s.to_numpy(np.float64, na_value=np.nan)
        v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = np.flatnonzero(np.isnan(v) & ~miss)
        if bad.size:
            parse_number(s.iloc[bad[0]], s.index[bad[0]], name, s.index.name)  # raises, naming row and column
        return v

    def _numeric_ids(self, c: dict, v: np.ndarray, offset: int) -> np.ndarray:
        atoms = np.asarray(c["atoms"], dtype=np.float64)
        ids = np.full(v.shape, offset, dtype=np.int64)
        if c["knots"]:
            ids = offset + 1 + len(atoms) + np.searchsorted(np.asarray(c["edges"]), v, side="right")
        if len(atoms):
            pos = np.clip(np.searchsorted(atoms, v), 0, len(atoms) - 1)
            hit = atoms[pos] == v
            if not c["knots"]:  # only atoms: an unseen value takes the nearest atom (documented fallback)
                left = np.clip(pos - 1, 0, len(atoms) - 1)
                nearer_left = np.abs(atoms[left] - v) < np.abs(atoms[pos] - v)
                pos, hit = np.where(nearer_left, left, pos), np.ones_like(hit)
            ids = np.where(hit, offset + 1 + pos, ids)
        return ids

    def decode_frame(
        self, ids: np.ndarray | torch.Tensor, rng: np.random.Generator | None = None
    ) -> pd.DataFrame:
        """int64[N, C] -> DataFrame (numeric float, integer as nullable Int64, categorical object; missing NA).

        rng=None decodes an interval to its training median; a Generator draws within the interval."""
        self._require_fitted()
        ids = np.asarray(torch.as_tensor(ids).cpu(), dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] != self.n_columns:
            raise ValueError(f"expected ids of shape (N, {self.n_columns}), got {ids.shape}")
        data = {}
        for j, c in enumerate(self.columns):
            local = (
                ids[:, j] - self._offsets[j]
            )  # 0 = missing, 1.. = values; specials/other columns -> invalid
            if c["kind"] == "categorical":
                cats = np.array([None, *c["categories"]], dtype=object)
                unk = c["rare"][0] if c["rare"] else self.unk_label
                valid = (local >= 0) & (local < c["_size"])
                col = np.where(valid, cats[np.clip(local, 0, c["_size"] - 1)], None)
                col[ids[:, j] == UNK_ID] = unk
                bad = ~valid & (ids[:, j] != UNK_ID)
                if bad.any():
                    raise ValueError(
                        f"column {c['name']!r}: token {int(ids[bad, j][0])} is not one of its tokens"
                    )
                data[c["name"]] = pd.Series(col, dtype=object)  # not pandas' str dtype: keep None as missing
            else:
                data[c["name"]] = self._decode_numeric(c, local, rng)
        return pd.DataFrame(data)

    def _decode_numeric(self, c: dict, local: np.ndarray, rng: np.random.Generator | None) -> Any:
        if ((local < 0) | (local >= c["_size"])).any():
            raise ValueError(
                f"column {c['name']!r}: token out of its block (a special or another column's token)"
            )
        atoms, n_atoms = np.asarray(c["atoms"], dtype=np.float64), len(c["atoms"])
        out = np.full(local.shape, np.nan)
        is_atom = (local >= 1) & (local <= n_atoms)
        out[is_atom] = atoms[local[is_atom] - 1]
        grid = np.linspace(0.0, 1.0, self.knots)
        for k, knots in enumerate(c["knots"]):
            sel = local == 1 + n_atoms + k
            if not sel.any():
                continue
            if rng is None:
                out[sel] = np.interp(0.5, grid, knots)
            else:
                out[sel] = np.interp(rng.random(int(sel.sum())), grid, knots)
            if (
                c["kind"] == "integer"
            ):  # stay integral and inside [min, max] of the interval's training values
                out[sel] = np.clip(np.round(out[sel]), knots[0], knots[-1])
        if c["kind"] == "integer":
            return pd.array(np.where(np.isnan(out), None, out), dtype="Int64")
        return out

    def bin_bounds(self, column: int, token: int) -> tuple[float, float]:
        """[lo, hi] training range covered by a numeric token of `column` (for tests and diagnostics)."""
        c, local = self.columns[column], token - self._offsets[column]
        if local <= len(c["atoms"]):
            return c["atoms"][local - 1], c["atoms"][local - 1]
        knots = c["knots"][local - 1 - len(c["atoms"])]
        return knots[0], knots[-1]


def infer_kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        return "categorical"
    v = s.dropna().to_numpy(np.float64)
    return "integer" if np.all(v == np.round(v)) else "numeric"


class _ListWriter:
    def __init__(self, buf: list[str]) -> None:
        self.buf = buf

    def write(self, s: str) -> int:
        self.buf.append(s)
        return len(s)

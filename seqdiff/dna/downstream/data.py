"""Tokenised classification data: encoding, the long-sequence policy, validation carving, batching."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger("seqdiff.downstream")

LONG_POLICIES = ("truncate", "tile", "error")


def encode_sequences(
    sequences: Sequence[str], tokenizer, window: int | None, long_sequences: str = "truncate", what: str = "data",
    rows: Sequence[str] | None = None,
) -> list[Tensor]:
    """Strings -> LongTensor[L_i] token ids, applying the long-sequence policy against `window` (tokens).

    truncate: keep the central `window` tokens (junction/TSS-centred tasks carry the signal in the middle);
    tile: keep everything, the classifier runs ceil(L/window) windows and pools over all of them;
    error: refuse, naming the first such sequence (`rows[i]`, where sequence i came from, if given).
    window=None (CNN, k-mer models) keeps every sequence whole.
    """
    def where(i: int) -> str:
        return rows[i] if rows is not None else f"{what} sequence #{i}"

    if long_sequences not in LONG_POLICIES:
        raise ValueError(f"long_sequences must be one of {LONG_POLICIES}, got {long_sequences!r}")
    out = []
    for i, s in enumerate(sequences):
        try:
            out.append(torch.as_tensor(tokenizer.encode(s), dtype=torch.long))
        except ValueError as e:
            raise ValueError(f"{where(i)}: {e}") from None
    if window is None:
        return out
    long = [i for i, x in enumerate(out) if len(x) > window]
    if not long:
        return out
    longest = max(len(out[i]) for i in long)
    msg = f"{len(long)} of {len(out)} {what} sequences exceed the model window of {window} tokens (longest {longest})"
    if long_sequences == "error":
        raise ValueError(f"{where(long[0])}: {len(out[long[0]])} tokens exceed the model window of {window} "
                         f"({msg}); set long_sequences=truncate or long_sequences=tile")
    if long_sequences == "truncate":
        log.warning("%s: truncating them to their central %d tokens", msg, window)
        for i in long:
            start = (len(out[i]) - window) // 2
            out[i] = out[i][start : start + window]
    else:
        log.warning("%s: tiling them into up to %d windows whose features are pooled together", msg,
                    math.ceil(longest / window))
    return out


def carve_validation(labels: Sequence[int], fraction: float, seed: int,
                     spans: Sequence[tuple[int, int]] | None = None, block: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) carved from the training set; the seed changes the split.

    spans=None: a stratified random carve. spans (each sequence's (start, end) on one chromosome, as genome tasks
    have): a *blocked* carve: the sequences, in chromosome order, are cut into blocks of `block` neighbours and
    every (1/fraction)-th block (offset by the seed) is validation; training sequences overlapping a validation
    one are dropped. Validation then never holds a base trained on (a random carve of overlapping windows
    would), and still samples the whole training region (one contiguous block would be one local neighbourhood).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    idx = np.arange(len(labels))
    if spans is not None:
        return _blocked_carve(np.asarray(labels), np.asarray(spans, dtype=np.int64).reshape(-1, 2), fraction, seed,
                              block)
    counts = np.bincount(np.asarray(labels))
    stratify = labels if counts[counts > 0].min() >= 2 else None  # a singleton class cannot be stratified
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(va)


def _blocked_carve(labels: np.ndarray, spans: np.ndarray, fraction: float, seed: int,
                   block: int) -> tuple[np.ndarray, np.ndarray]:
    if len(spans) != len(labels):
        raise ValueError(f"{len(spans)} spans for {len(labels)} training sequences")
    order = np.argsort(spans[:, 0], kind="stable")
    chunk = np.arange(len(labels)) // block  # block number of each sequence in chromosome order
    every = max(2, round(1 / fraction))
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[order] = chunk % every == seed % every
    va = np.flatnonzero(is_val)
    if len(va) == 0 or len(np.unique(labels[va])) < len(np.unique(labels)):
        raise ValueError(f"blocked validation ({block} neighbouring sequences per block, every {every}th block) "
                         f"misses a class; raise val_fraction or lower the block size")
    starts, ends = spans[va, 0], spans[va, 1]
    by_start = np.argsort(starts)
    starts, reach = starts[by_start], np.maximum.accumulate(ends[by_start])
    # a training sequence [s, e) overlaps some validation [vs, ve) iff a validation start < e has reach > s
    k = np.searchsorted(starts, spans[:, 1], side="left")  # validation sequences starting before e
    overlaps = (k > 0) & (reach[np.maximum(k - 1, 0)] > spans[:, 0])
    tr = np.flatnonzero(~is_val & ~overlaps)
    if len(np.unique(labels[tr])) < len(np.unique(labels)):
        raise ValueError("blocked validation leaves a class out of training; lower val_fraction")
    return tr, va


class TokenDataset(Dataset):
    def __init__(self, tokens: Sequence[Tensor], labels: Sequence[int]) -> None:
        self.tokens, self.labels = list(tokens), torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.tokens[i], self.labels[i]


def collate(pad_id: int):
    """Pad a list of (tokens[L_i], label) to {"x": LongTensor[B, L_max] (pad_id after the end), "y": [B]}."""

    def fn(batch: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        xs, ys = zip(*batch, strict=True)
        x = torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True, padding_value=pad_id)
        return {"x": x, "y": torch.stack(ys)}

    return fn


def loader(tokens, labels, pad_id: int, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TokenDataset(tokens, labels), batch_size=batch_size, shuffle=shuffle,
                      collate_fn=collate(pad_id), generator=g)

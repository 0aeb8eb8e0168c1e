"""k-th order Markov baseline over nucleotide tokens, fitted on exactly the model's training region.

Counts of (context, next) codes are kept sparse (sorted unique codes + searchsorted), so orders up to ~12
fit in memory on a 60 Mb chromosome. Windows are scored with only their own context (like the diffusion
model, which sees one window): position i of a window uses order min(i, k). Additive (Dirichlet) smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _codes(seq: np.ndarray, order: int, alphabet: int) -> np.ndarray:
    """Integer code of each (order-context, next) pair in seq: sum_j seq[i-order+j] * A^(order-j)."""
    n = len(seq) - order
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    for j in range(order + 1):
        code = code * alphabet + seq[j : j + n].astype(np.int64)
    return code


@dataclass
class _Table:
    codes: np.ndarray  # sorted unique (context, next) codes
    counts: np.ndarray
    ctx_codes: np.ndarray  # sorted unique context codes
    ctx_counts: np.ndarray

    @staticmethod
    def lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(keys, query).clip(0, max(len(keys) - 1, 0))
        hit = (keys[idx] == query) if len(keys) else np.zeros(len(query), bool)
        return np.where(hit, values[idx] if len(keys) else 0, 0)


class MarkovModel:
    """Additively smoothed Markov chain of `order` over token ids in [0, alphabet)."""

    def __init__(self, order: int, alphabet: int = 5, alpha: float = 0.5) -> None:
        self.order, self.alphabet, self.alpha = order, alphabet, alpha
        self.tables: list[_Table] = []

    def fit(self, sequences: Sequence[np.ndarray]) -> MarkovModel:
        A = self.alphabet
        for k in range(self.order + 1):
            codes = np.concatenate([_codes(s, k, A) for s in sequences])
            u, c = np.unique(codes, return_counts=True)
            cu, inv = np.unique(u // A, return_inverse=True)
            cc = np.bincount(inv, weights=c).astype(np.int64)
            self.tables.append(_Table(u, c, cu, cc))
        return self

    def log2_probs(self, window: np.ndarray) -> np.ndarray:
        """Per-position log2 p(x_i | x_{i-k..i-1}) for one window (uses only in-window context)."""
        A, out = self.alphabet, np.empty(len(window))
        w = window.astype(np.int64)
        for i in range(min(self.order, len(w))):  # short-context prefix: order i at position i
            out[i] = self._log2p(w[: i + 1][None, :], i)[0]
        if len(w) > self.order:
            codes = _codes(w, self.order, A)
            out[self.order :] = self._log2p_codes(codes, self.order)
        return out

    def _log2p(self, rows: np.ndarray, k: int) -> np.ndarray:
        code = np.zeros(len(rows), dtype=np.int64)
        for j in range(k + 1):
            code = code * self.alphabet + rows[:, j]
        return self._log2p_codes(code, k)

    def _log2p_codes(self, codes: np.ndarray, k: int) -> np.ndarray:
        t = self.tables[k]
        c = _Table.lookup(t.codes, t.counts, codes)
        n = _Table.lookup(t.ctx_codes, t.ctx_counts, codes // self.alphabet)
        return np.log2((c + self.alpha) / (n + self.alpha * self.alphabet))

    def bits_per_token(self, windows: Sequence[np.ndarray]) -> float:
        total = sum(-self.log2_probs(w).sum() for w in windows)
        return float(total / sum(len(w) for w in windows))


def best_markov(train: Sequence[np.ndarray], valid: Sequence[np.ndarray], orders: Sequence[int],
                alphabet: int = 5, alpha: float = 0.5) -> tuple[MarkovModel, dict[int, float]]:
    """Fit one model of the largest order (its tables hold every lower order too) and pick k on valid."""
    full = MarkovModel(max(orders), alphabet, alpha).fit(train)
    scores: dict[int, float] = {}
    for k in orders:
        m = MarkovModel(k, alphabet, alpha)
        m.tables = full.tables[: k + 1]
        scores[k] = m.bits_per_token(valid)
    k_best = min(scores, key=scores.get)
    best = MarkovModel(k_best, alphabet, alpha)
    best.tables = full.tables[: k_best + 1]
    return best, scores

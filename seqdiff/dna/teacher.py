"""A count-based teacher for masked-diffusion training: q(x_l | k clean bases left, k clean bases right).

Why. The network's target at a masked position l is p(x_l | xt). Training uses the one-hot x_l, whose
expectation given xt is that target. Any q(x_l | x0 without l) with E[q | xt] = p(x_l | xt) is an equally
unbiased target with far less variance (the tower property: if q is the true full conditional, E[q | xt]
is exactly p(x_l | xt)). A two-sided k-mer count table over the *whole* training split is such a q, only
approximately (it sees 2k bases, not the whole window): so the loss mixes it with the one-hot target,
`(1 - w) * CE(one-hot) + w * CE(q)`. The counts summarise every base of the training split in seconds,
where the network reads only the few million bases a short run has time for.

Counts are taken on both strands (a context and its reverse complement), so q is strand-symmetric.
Smoothing: the k-context estimate is interpolated with a (k_low)-context estimate, itself add-alpha
smoothed: q_k = (c_k + beta * q_low) / (n_k + beta).
"""

from __future__ import annotations

import numpy as np

COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.int64)  # base codes A C G T N -> T G C A N
A = 5  # alphabet: A C G T N


def _codes(seq: np.ndarray, k: int) -> np.ndarray:
    """Code of (left k, center, right k) for every position with full context: sum seq[i+j] * 5^(..)."""
    n = len(seq) - 2 * k
    code = np.zeros(max(n, 0), dtype=np.int64)
    for j in range(2 * k + 1):
        code = code * A + seq[j : j + n]
    return code


class CountTeacher:
    def __init__(self, k: int = 4, k_low: int = 2, beta: float = 4.0, alpha: float = 0.5) -> None:
        if not 0 <= k_low < k <= 5:
            raise ValueError(f"CountTeacher needs 0 <= k_low < k <= 5, got k={k}, k_low={k_low}")
        self.k, self.k_low, self.beta, self.alpha = k, k_low, beta, alpha
        self.probs: np.ndarray | None = None  # (5^(2k), 5) float32: q(center | left, right)

    def _table(self, seqs: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        counts = np.zeros(A ** (2 * k + 1), dtype=np.int64)
        for s in seqs:
            s = s.astype(np.int64)
            for strand in (s, COMPLEMENT[s[::-1]]):
                counts += np.bincount(_codes(strand, k), minlength=counts.size)
        c = counts.reshape(A**k, A, A**k).transpose(0, 2, 1).reshape(A ** (2 * k), A)  # (left*right, center)
        return c.astype(np.float64), c.sum(1, keepdims=True).astype(np.float64)

    def fit(self, seqs: list[np.ndarray]) -> CountTeacher:
        """seqs: base codes (uint8 0..4, A C G T N) of the training split."""
        c_low, n_low = self._table(seqs, self.k_low)
        q_low = (c_low + self.alpha) / (n_low + A * self.alpha)  # (5^(2 k_low), 5)
        c, n = self._table(seqs, self.k)
        # index of the inner (k_low) context for every outer context: drop the outermost bases on each side
        d = self.k - self.k_low
        ctx = np.arange(A ** (2 * self.k))
        left, right = ctx // A**self.k, ctx % A**self.k
        inner = (left % A**self.k_low) * A**self.k_low + right // A**d
        self.probs = ((c + self.beta * q_low[inner]) / (n + self.beta)).astype(np.float32)
        return self

    def __call__(self, seq: np.ndarray) -> np.ndarray:
        """q for every position of `seq` except the k-base margins: seq (L + 2k,) codes -> (L, 5) float32."""
        if self.probs is None:
            raise RuntimeError("CountTeacher.fit first")
        code = _codes(seq.astype(np.int64), self.k)
        k = self.k
        left, right = code // A ** (k + 1), code % A**k
        return self.probs[left * A**k + right]

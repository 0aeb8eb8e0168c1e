"""A two-sided n-gram prior for DNA denoisers: count tables of the training split, looked up by the visible bases
on each side of every position, added to the network's logits (residual learning on top of an n-gram model).

Why: an order-9 Markov chain fitted on 56 Mb of chr20 beats a transformer trained for an hour on 2 CPU cores,
because its counts hold what the network has neither the parameters nor the steps to learn (docs/training.md,
"Where the gap to AR lives"). Counting costs one pass over the training split; learning the same table by
gradient costs many epochs. So the denoiser starts from the counts and learns only what they miss (long-range
context, repeats beyond the window of the table, masked gaps).

For a masked position i of a noisy window x_t, `NgramPrior` finds the runs of visible bases (ids 0..3: A C G T;
an N, [MASK] or the window edge ends a run) directly left and right of i, keeps up to `max_context` of them in
total (`l` on the left, `r` on the right, split evenly when both runs are long), and returns the smoothed
training-split distribution of the base between that left l-mer and right r-mer:

    p_{l,r}(b | ctx) = (count(ctx, b) + alpha * p_parent(b)) / (count(ctx) + alpha)

where the parent context drops the farthest base of the longer side (down to the unigram, then uniform). The
token at i itself is never read, so the prior cannot leak the base it predicts. With `causal=True` (AR) the
context is the run ending at i (the inputs the model sees when predicting token i + 1): an ordinary
backed-off Markov chain of order `max_context`.

The count tables are buffers (saved in checkpoints): sum over l + r <= K of 4^(l + r + 1) floats; K = 8 is 3M
floats (12 MB). `fit` counts the (K+1)-mers of both strands of the training split once (DNA statistics are
reverse-complement symmetric) and derives every table from them; the smoothed probabilities are built at lookup
time, which lets training leave each position's own occurrence out of the counts (`holding_out`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("seqdiff.backbones.ngram_prior")

ALPHABET = 4
MAX_CONTEXT = 10
CHUNK = 1 << 24  # bases counted at a time


def context_pairs(max_context: int, causal: bool) -> list[tuple[int, int]]:
    """The (l, r) table shapes, in fitting order (parents before children)."""
    if causal:
        return [(nl, 0) for nl in range(max_context + 1)]
    return [(nl, n - nl) for n in range(max_context + 1) for nl in range(n + 1)]


def split_context(run_left: Tensor, run_right: Tensor, max_context: int) -> tuple[Tensor, Tensor]:
    """Context lengths (l, r) with l <= run_left, r <= run_right, l + r <= K, shared evenly when both are long."""
    half = (max_context + 1) // 2
    nl = torch.minimum(run_left, torch.clamp(max_context - run_right, min=half))
    nr = torch.minimum(run_right, max_context - nl)
    return nl, nr


def kmer_counts(seqs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Counts of every k-mer of bases (codes 0..3; anything else breaks a k-mer) as a (4,) * k array whose
    axis m is the base at offset m of the k-mer."""
    out = np.zeros(ALPHABET**k, dtype=np.int64)
    chunks = (np.asarray(seq)[a : a + CHUNK + k - 1] for seq in seqs for a in range(0, max(len(seq) - k + 1, 1), CHUNK))
    for s in chunks:  # chunks overlapping by k - 1 bases: each k-mer counted once, memory bounded (hg38)
        s = s.astype(np.int64)
        n = len(s) - k + 1
        if n <= 0:
            continue
        valid = s < ALPHABET
        idx = np.arange(len(s))
        run = idx - np.maximum.accumulate(np.where(valid, -1, idx))  # bases ending at each position
        code = np.zeros(n, dtype=np.int64)
        for m in range(k):
            code = code * ALPHABET + np.where(valid[m : m + n], s[m : m + n], 0)
        out += np.bincount(code[run[k - 1 :] >= k], minlength=ALPHABET**k)
    return out.reshape((ALPHABET,) * k) if k else out.reshape(())


def context_counts(kmers: np.ndarray, nl: int, nr: int) -> np.ndarray:
    """counts[ctx, b] for the (l, r) table from (K+1)-mer counts: the base at offset l of each (l + r + 1)-mer
    (marginalised from the K+1-mers, so every table counts the same fully visible windows), ctx = left code *
    4^r + right code, each code with the base nearest the centre as its lowest digit."""
    n = nl + nr + 1
    t = kmers.sum(axis=tuple(range(n, kmers.ndim))) if kmers.ndim > n else kmers
    order = list(range(nl)) + list(range(nl + nr, nl, -1)) + [nl]
    return t.transpose(order).reshape(ALPHABET ** (nl + nr), ALPHABET)


class NgramPrior(nn.Module):
    """(x: LongTensor[B, L]) -> FloatTensor[B, L, 4]: log p(base at i | visible context), from count tables."""

    def __init__(self, max_context: int = 8, alpha: float = 4.0, causal: bool = False,
                 rc: bool = True) -> None:
        super().__init__()
        if not 0 <= int(max_context) <= MAX_CONTEXT:
            raise ValueError(f"ngram_context must be in 0..{MAX_CONTEXT}, got {max_context}")
        self.max_context, self.alpha, self.causal, self.rc = int(max_context), float(alpha), bool(causal), bool(rc)
        self.pairs = context_pairs(self.max_context, self.causal)
        K = self.max_context + 1
        offsets = torch.full((K, K), -1, dtype=torch.long)
        n = 0
        for nl, nr in self.pairs:
            offsets[nl, nr] = n
            n += ALPHABET ** (nl + nr)
        self.register_buffer("offsets", offsets, persistent=False)
        # counts[row, b] of each (l, r) table at offsets[l, r]; zero (a uniform prior) until fitted
        self.register_buffer("counts", torch.zeros(n, ALPHABET))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.holdout: Tensor | None = None  # training targets to leave out of the counts (`holding_out`)

    def fit(self, seqs: Sequence[np.ndarray]) -> NgramPrior:
        """Fill the tables from base-code sequences (uint8 0..4 = A C G T N) of the training split."""
        kmers = kmer_counts(seqs, self.max_context + 1)
        if self.rc:  # the other strand: complement every base (flip each axis) and reverse the k-mer
            kmers = kmers + np.flip(kmers).transpose(tuple(range(kmers.ndim))[::-1])
        out = torch.empty_like(self.counts)
        for nl, nr in self.pairs:
            o = int(self.offsets[nl, nr])
            out[o : o + ALPHABET ** (nl + nr)] = torch.from_numpy(context_counts(kmers, nl, nr).astype(np.float32))
        self.counts.copy_(out)
        self.fitted.fill_(True)
        log.info("n-gram prior fitted: %d tables, %d contexts, %.1fM bases (both strands: %s)", len(self.pairs),
                 len(out), sum(len(s) for s in seqs) / 1e6, self.rc)
        return self

    @staticmethod
    def runs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(digits, run of bases ending at i inclusive, run starting at i inclusive), each (B, L); a run is 0
        where x_i is not a base (ids 0..3)."""
        valid = (x >= 0) & (x < ALPHABET)
        B, L = x.shape
        pos = torch.arange(L, device=x.device).expand(B, L)
        ending = pos - torch.cummax(torch.where(valid, -1, pos), dim=1).values
        flipped = torch.flip(valid, [1])
        starting = torch.flip(pos - torch.cummax(torch.where(flipped, -1, pos), dim=1).values, [1])
        return torch.where(valid, x, torch.zeros_like(x)), ending, starting

    def codes(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(l, r, left code, right code), each (B, L): the context lengths of every position and the codes of
        its visible bases (nearest base = lowest digit; the codes hold exactly l and r digits)."""
        K = self.max_context
        digits, ending, starting = self.runs(x)
        B, L = x.shape
        padded = F.pad(digits, (K + 1, K + 1))  # position p is padded[:, p + K + 1]
        if self.causal:  # context of token i + 1: the bases ending at i (inclusive); digit j - 1 is base i - j + 1
            nl, nr, first = ending.clamp(max=K), torch.zeros_like(ending), K + 2
        else:  # bases ending at i - 1 and starting at i + 1; digit j - 1 is base i - j
            left = F.pad(ending, (1, 0))[:, :L]
            right = F.pad(starting, (0, 1))[:, 1:]
            nl, nr = split_context(left.clamp(max=K), right.clamp(max=K), K)
            first = K + 1
        code_l = torch.zeros_like(x)
        code_r = torch.zeros_like(x)
        for j in range(1, K + 1):
            scale = ALPHABET ** (j - 1)
            code_l = code_l + torch.where(nl >= j, padded[:, first - j : first - j + L], 0) * scale
            if not self.causal:
                code_r = code_r + torch.where(nr >= j, padded[:, K + 1 + j : K + 1 + j + L], 0) * scale
        return nl, nr, code_l, code_r

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities (B, L, 4), built up the back-off chain from the unigram to each position's (l, r).

        While `holdout` holds the training targets (B, L) (inside `holding_out`), each position's own
        occurrence is left out of every count it reads: the training split's tables contain the windows the
        network trains on, and without this the network would learn to trust counts that include the answer
        (validation bits/base then rises while training bits/base falls)."""
        nl, nr, code_l, code_r = self.codes(x)
        hold = self.holdout if self.holdout is not None and self.holdout.shape == x.shape else None
        if hold is not None:
            is_base = (hold >= 0) & (hold < ALPHABET)
            target = torch.where(is_base, hold, torch.zeros_like(hold)).unsqueeze(-1)
            one = F.one_hot(target.squeeze(-1), ALPHABET).to(self.counts.dtype) * is_base.unsqueeze(-1)
        p = torch.full((*x.shape, ALPHABET), 1.0 / ALPHABET, device=x.device)
        total = nl + nr
        for n in range(self.max_context + 1):
            active = total >= n
            if self.causal:
                ln, rn = torch.full_like(nl, n), torch.zeros_like(nr)
            else:  # the ancestor of (l, r) with n bases: drop from the longer side, the left one on ties
                ln = torch.clamp(nl, max=n // 2)
                rn = n - ln
                over = rn > nr
                rn = torch.where(over, nr, rn)
                ln = torch.where(over, n - nr, ln)
            ln = torch.where(active, ln, torch.zeros_like(ln))
            rn = torch.where(active, rn, torch.zeros_like(rn))
            idx = self.offsets[ln, rn] + (code_l % ALPHABET**ln) * ALPHABET**rn + code_r % ALPHABET**rn
            c = self.counts[idx]  # (B, L, 4)
            if hold is not None:  # leave this occurrence out (when it was counted)
                c = c - one * (c.gather(-1, target) >= 1)
            new = (c + self.alpha * p) / (c.sum(-1, keepdim=True) + self.alpha)
            p = torch.where(active.unsqueeze(-1), new, p)
        return p.log()


@contextmanager
def holding_out(backbone: nn.Module, x0: Tensor):
    """Within the block, a backbone's n-gram prior (if it has one) leaves the targets x0 out of its counts."""
    prior = getattr(backbone, "ngram", None)
    if not isinstance(prior, NgramPrior):
        yield
        return
    prior.holdout = x0
    try:
        yield
    finally:
        prior.holdout = None

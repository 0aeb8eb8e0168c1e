"""An exact denoiser for a k-th order Markov chain over A C G T: p(x0_l | xt) by forward-backward.

For data drawn from the chain, the posterior marginal of every masked position given the unmasked ones is
computable exactly (a hidden Markov model whose hidden state is the last k bases and whose observations are
the unmasked tokens). `MarkovOracle` is therefore a perfect MDLM denoiser for that data: with it, any
difference between samplers is the samplers' own doing, never the network's. Used to study the remasking
sampler (scripts/benchmark_remasking.py) and in tests.

The chain is fitted on real sequences (counts of k-mer -> next base, additive smoothing); positions holding
anything but A C G T (N, mask) are unobserved. Output: logits (B, L, V) = log posterior marginals on A C G T
(ids 0..3 of the char tokenizer) and -1e4 elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from seqdiff.dna.metrics import encode


class MarkovOracle(nn.Module):
    time_conditioning = False

    def __init__(self, order: int, transitions: np.ndarray, initial: np.ndarray, vocab_size: int,
                 max_len: int) -> None:
        super().__init__()
        S = 4**order
        if transitions.shape != (S, 4) or initial.shape != (S,):
            raise ValueError(f"order {order} needs transitions (4^k, 4) and initial (4^k,)")
        self.order, self.vocab_size, self.max_len = order, vocab_size, max_len
        # state s = (oldest base f, rest r) -> next state (r, b) with probability P[s, b]: stored as (4, S/4, 4)
        self.register_buffer("P", torch.tensor(transitions, dtype=torch.float64).view(4, S // 4, 4))
        self.register_buffer("initial", torch.tensor(initial / initial.sum()))
        digits = [(np.arange(S) // 4 ** (order - 1 - j)) % 4 for j in range(order)]  # base j of each k-mer state
        self.register_buffer("digits", torch.tensor(np.stack(digits), dtype=torch.long))  # (k, S)
        self.device_anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # samplers read the device off it

    @classmethod
    def fit(cls, sequences, order: int, vocab_size: int, max_len: int, alpha: float = 1.0) -> MarkovOracle:
        """Fit on strings or uint8 ASCII arrays (N-containing k-mers skipped)."""
        S = 4**order
        trans = np.full((S, 4), alpha)
        init = np.full(S, alpha)
        for seq in sequences:
            c = encode(seq)
            n = len(c) - order
            if n <= 0:
                continue
            code = np.zeros(n, dtype=np.int64)
            valid = np.ones(n, dtype=bool)
            for j in range(order):
                code = code * 4 + np.maximum(c[j : j + n], 0)
                valid &= c[j : j + n] >= 0
            nxt = c[order:]
            ok = valid & (nxt >= 0)
            trans += np.bincount(code[ok] * 4 + nxt[ok], minlength=4 * S).reshape(S, 4)
            init += np.bincount(code[valid], minlength=S)
        return cls(order, trans / trans.sum(1, keepdims=True), init, vocab_size, max_len)

    @torch.no_grad()
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        B, L = x.shape
        k, S = self.order, self.initial.shape[0]
        P = self.P  # (4, S/4, 4)
        obs = torch.where((x >= 0) & (x < 4), x, torch.full_like(x, -1))  # -1 = unobserved
        last = self.digits[-1]  # (S,) last base of each state
        # emission of the state at position l >= k-1: consistent with x_l (the last base)
        emit = torch.where(obs[..., None] < 0, 1.0, (last[None, None] == obs[..., None]).double())  # (B, L, S)
        first = torch.ones(B, S, dtype=torch.float64, device=x.device)  # the first state covers x_0..x_{k-1}
        for j in range(k):
            oj = obs[:, j : j + 1]
            first = first * torch.where(oj < 0, 1.0, (self.digits[j][None] == oj).double())
        n_states = L - k + 1
        alpha = torch.empty(B, n_states, S, dtype=torch.float64, device=x.device)
        a = self.initial[None] * first
        alpha[:, 0] = a / a.sum(-1, keepdim=True)
        for i in range(1, n_states):
            a = (alpha[:, i - 1].view(B, 4, S // 4, 1) * P).sum(1).reshape(B, S) * emit[:, k - 1 + i]
            alpha[:, i] = a / a.sum(-1, keepdim=True).clamp_min(1e-300)
        beta = torch.ones(B, S, dtype=torch.float64, device=x.device)
        post = torch.empty_like(alpha)
        post[:, -1] = alpha[:, -1]
        for i in range(n_states - 2, -1, -1):
            eb = (emit[:, k + i] * beta).view(B, 1, S // 4, 4)
            beta = (P * eb).sum(-1).reshape(B, S)
            beta = beta / beta.sum(-1, keepdim=True).clamp_min(1e-300)
            p = alpha[:, i] * beta
            post[:, i] = p / p.sum(-1, keepdim=True)
        probs = torch.zeros(B, L, 4, dtype=torch.float64, device=x.device)
        onehot = torch.nn.functional.one_hot(self.digits, 4).double()  # (k, S, 4)
        probs[:, k - 1 :] = post @ onehot[-1]  # positions k-1.. read the last base of their state
        for j in range(k - 1):  # the first k-1 positions read base j of the first state
            probs[:, j] = post[:, 0] @ onehot[j]
        logits = torch.full((B, L, self.vocab_size), -1e4, dtype=torch.float64, device=x.device)
        logits[..., :4] = probs.clamp_min(1e-300).log()
        return logits.float()

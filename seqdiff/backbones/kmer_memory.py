"""An explicit k-mer memory for DNA denoisers: exact embedding tables indexed by the visible k-mers next to
each position.

An order-9 Markov chain beats a small transformer on held-out human DNA because its table of 9-mer counts
memorises what a network of 1M parameters does not have room or steps to learn: the consensus of interspersed
repeats (Alu, L1), where the next base is determined by the previous few (docs/training.md, "Where the gap to
AR lives"). `KmerMemory` gives the network such a table. For every order k in `orders` and every position i,
it looks up a learned vector for the k bases on each side of i:

- bidirectional (MDLM): the k bases before i (i-k .. i-1) and the k bases after i (i+1 .. i+k), both
  excluding i itself (the token being predicted when it is masked);
- causal (AR): the k bases ending at i (i-k+1 .. i), the input the model may see at position i.

A k-mer counts only when all of its k tokens are visible bases (ids 0 .. alphabet-1: A C G T for the
character tokenizer); an N, padded or out-of-window base sends it to a fixed zero row. A masked base does too,
unless `mask_id` is given: then [MASK] is one more symbol of the k-mer (alphabet + 1 letters), so a partly
masked context still finds its row (under masking at rate t only (1 - t)^k of k-mers are fully visible). The tables are
exact (alphabet^k rows, no hashing), so k <= 10 keeps them small; each table has `dim` columns, summed over
tables and projected to d_model. The lookups cost no matmul FLOPs beyond one (dim x d_model) projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_ORDER = 10


class KmerMemory(nn.Module):
    """(x: LongTensor[B, L]) -> FloatTensor[B, L, d_model], to be added to the token embeddings."""

    def __init__(self, d_model: int, orders: list[int] | tuple[int, ...], dim: int = 32, alphabet: int = 4,
                 causal: bool = False, mask_id: int | None = None) -> None:
        super().__init__()
        orders = tuple(int(k) for k in orders)
        if not orders or any(not 1 <= k <= MAX_ORDER for k in orders) or len(set(orders)) != len(orders):
            raise ValueError(f"kmer_orders must be distinct orders in 1..{MAX_ORDER}, got {list(orders)}")
        self.orders, self.alphabet, self.causal = orders, int(alphabet), bool(causal)
        self.mask_id = None if mask_id is None else int(mask_id)
        self.letters = self.alphabet + (self.mask_id is not None)
        self.sides = ("inclusive",) if causal else ("left", "right")
        offsets, n = [], 0
        for k in orders:
            for _ in self.sides:
                offsets.append(n)
                n += self.letters**k
        self.offsets = offsets
        self.null = n  # the row for "this k-mer is not fully visible"
        self.table = nn.Embedding(n + 1, dim, padding_idx=n)
        nn.init.normal_(self.table.weight, std=0.02)
        with torch.no_grad():
            self.table.weight[n].zero_()
        self.table.weight._no_weight_decay = True  # rarely seen rows would otherwise decay between visits
        self.proj = nn.Linear(dim, d_model, bias=False)

    def indices(self, x: Tensor) -> Tensor:
        """(B, L) token ids -> (B, L, n_tables) rows of `table` (the null row where a k-mer is not visible)."""
        B, L = x.shape
        valid = (x >= 0) & (x < self.alphabet)
        digits = torch.where(valid, x, torch.zeros_like(x))
        if self.mask_id is not None:
            masked = x == self.mask_id
            digits = torch.where(masked, torch.full_like(x, self.alphabet), digits)
            valid = valid | masked
        out, j = [], 0
        for k in self.orders:
            weights = self.letters ** torch.arange(k - 1, -1, -1, device=x.device)
            # window s of the k-padded sequence covers original positions s - k .. s - 1
            codes = (F.pad(digits, (k, k)).unfold(1, k, 1) * weights).sum(-1)  # (B, L + k + 1)
            seen = F.pad(valid, (k, k)).unfold(1, k, 1).all(-1)
            for side in self.sides:
                start = {"left": 0, "inclusive": 1, "right": k + 1}[side]
                idx = codes[:, start : start + L] + self.offsets[j]
                out.append(torch.where(seen[:, start : start + L], idx, torch.full_like(idx, self.null)))
                j += 1
        return torch.stack(out, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.table(self.indices(x)).sum(-2))

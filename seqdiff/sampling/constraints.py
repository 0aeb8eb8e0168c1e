"""Constraints every sampler honours: fixed tokens and per-position allowed alphabets.

Higher-level builders (IUPAC templates, JASPAR motifs, flanks) compile down to this one plain object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Constraints:
    """fixed: LongTensor[L], token id or -1 (free). allowed: BoolTensor[L, V] or None (all tokens allowed).

    Fixed tokens are written before the first step and never change; `allowed` masks log-probabilities
    before sampling (and is renormalised), so a restricted position only ever receives an allowed token.
    """

    fixed: Tensor
    allowed: Tensor | None = None

    def __post_init__(self) -> None:
        if self.fixed.ndim != 1:
            raise ValueError(f"Constraints.fixed must be 1-D (L,), got shape {tuple(self.fixed.shape)}")
        if self.allowed is not None:
            if self.allowed.ndim != 2 or self.allowed.shape[0] != self.fixed.shape[0]:
                raise ValueError(f"Constraints.allowed must be (L={self.length}, V), got {tuple(self.allowed.shape)}")
            empty = (~self.allowed.any(-1)).nonzero().flatten()
            if len(empty):
                raise ValueError(f"no token is allowed at position(s) {empty.tolist()[:10]}")
            fixed_pos = (self.fixed >= 0).nonzero().flatten()
            bad = [int(i) for i in fixed_pos if not self.allowed[i, self.fixed[i]]]
            if bad:
                raise ValueError(f"fixed token is not in the allowed alphabet at position(s) {bad[:10]}")

    @property
    def length(self) -> int:
        return int(self.fixed.shape[0])

    @classmethod
    def free(cls, length: int) -> Constraints:
        return cls(torch.full((length,), -1, dtype=torch.long))

    def slice(self, start: int, stop: int) -> Constraints:
        return Constraints(self.fixed[start:stop], None if self.allowed is None else self.allowed[start:stop])

    def to(self, device: torch.device | str) -> Constraints:
        return Constraints(self.fixed.to(device), None if self.allowed is None else self.allowed.to(device))

    def initial(self, num_samples: int, mask_id: int) -> Tensor:
        """(B, L) starting sequence: fixed tokens in place, mask elsewhere."""
        x = torch.where(self.fixed >= 0, self.fixed, torch.full_like(self.fixed, mask_id))
        return x.unsqueeze(0).expand(num_samples, -1).clone()

    def restrict(self, log_probs: Tensor) -> Tensor:
        """Mask disallowed tokens of (B, L, V) log-probs and renormalise."""
        if self.allowed is None:
            return log_probs
        allowed = self.allowed[:, : log_probs.shape[-1]]
        log_probs = log_probs.masked_fill(~allowed, -torch.inf)
        return log_probs - torch.logsumexp(log_probs, dim=-1, keepdim=True)

    def satisfied(self, x: Tensor) -> Tensor:
        """(B,) bool: every fixed token in place and every token allowed."""
        fixed_ok = ((self.fixed < 0) | (x == self.fixed)).all(-1)
        if self.allowed is None:
            return fixed_ok
        allowed_ok = self.allowed.gather(1, x.T).T.all(-1)  # allowed[l, x[b, l]] for all l
        return fixed_ok & allowed_ok


SPECIAL_ID_NAMES = ("pad_id", "mask_id", "bos_id", "eos_id", "unk_id")  # every tokenizer has these


def special_ids(tokenizer, names: Sequence[str] = SPECIAL_ID_NAMES) -> list[int]:
    """Ids of the tokenizer's special tokens (`names`: pad, mask, bos, eos, unk by default) that exist."""
    return sorted({int(getattr(tokenizer, n)) for n in names if getattr(tokenizer, n, None) is not None})


def ordinary_tokens(tokenizer, vocab_size: int | None = None, names: Sequence[str] = SPECIAL_ID_NAMES) -> Tensor:
    """BoolTensor[V]: True for every token that is not one of the special tokens `names`."""
    allowed = torch.ones(vocab_size or tokenizer.vocab_size, dtype=torch.bool)
    allowed[special_ids(tokenizer, names)] = False
    return allowed


def no_special_tokens(tokenizer, length: int, vocab_size: int | None = None) -> Constraints:
    """Free constraints that forbid special tokens everywhere: generated DNA is only bases, never [PAD] etc.

    For a k-mer tokenizer the short tail tokens (fewer than k bases, which only end a sequence whose length is
    not a multiple of k) are forbidden too: one in the middle would shift every later base. A requested length
    that is not a multiple of k is generated as whole k-mers and cut after decoding."""
    allowed = ordinary_tokens(tokenizer, vocab_size)  # (V,)
    bases = getattr(tokenizer, "token_bases", None)
    if bases is not None:
        allowed[(bases[: len(allowed)] < getattr(tokenizer, "bases_per_token", 1)).nonzero().flatten()] = False
    allowed = allowed.expand(length, -1).clone()  # (L, V)
    return Constraints(torch.full((length,), -1, dtype=torch.long), allowed)

"""The tokenizer protocol every part of seqdiff codes against (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

# Names of the special tokens, shared by every tokenizer so configs never hard-code ids.
PAD, MASK, BOS, EOS, UNK = "[PAD]", "[MASK]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, MASK, BOS, EOS, UNK)


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    pad_id: int
    mask_id: int
    bos_id: int
    eos_id: int
    unk_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def config(self) -> dict:
        """`{"_target_": "dotted.Class", **kwargs}`; `hydra.utils.instantiate` rebuilds an identical tokenizer."""
        ...


@runtime_checkable
class NucleotideTokenizerProtocol(Tokenizer, Protocol):
    """A DNA tokenizer: fixed bases per token and a complement map over the whole vocabulary."""

    bases_per_token: int
    complement_ids: torch.Tensor  # LongTensor[V]: token -> complement token; specials -> themselves

    def reverse_complement(self, ids: torch.Tensor) -> torch.Tensor: ...

    def encode_bytes(self, seq: np.ndarray) -> np.ndarray: ...

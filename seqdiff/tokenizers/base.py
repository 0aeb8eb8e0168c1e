"""The tokenizer protocol every part of seqdiff codes against (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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


"""The tokenizer protocol every part of seqdiff codes against. Tokenizers live with their domain:
`seqdiff.dna.tokenizer`, `seqdiff.tables.tokenizer`, `seqdiff.code.tokenizer`."""

from seqdiff.tokenizers.base import Tokenizer

__all__ = ["Tokenizer"]

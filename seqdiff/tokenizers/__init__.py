"""Tokenizers: one protocol (`base.Tokenizer`); nucleotide tokenizers own the complement map."""

from seqdiff.tokenizers.base import NucleotideTokenizerProtocol, Tokenizer
from seqdiff.tokenizers.nucleotide import KmerTokenizer, NucleotideTokenizer

__all__ = ["Tokenizer", "NucleotideTokenizerProtocol", "NucleotideTokenizer", "KmerTokenizer"]

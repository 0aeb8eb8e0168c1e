"""Nucleotide tokenizers: char-level (`NucleotideTokenizer`) and non-overlapping k-mers (`KmerTokenizer`).

Input normalisation (both): soft-masked lower case is upper-cased; IUPAC ambiguity codes
(R Y S W K M B D H V, and N) become N; anything else raises ValueError naming the character and position.

Decoding: bases decode to themselves, so ACGTN strings round-trip exactly. `[MASK]` decodes to '-' per base
it covers (k dashes for a k-mer) so partially denoised sequences stay aligned with their coordinates; the
other specials decode to their bracketed names (`[PAD]`, `[BOS]`, `[EOS]`, `[UNK]`). `encode` does not accept
'-' or bracketed names back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from seqdiff.tokenizers.base import BOS, EOS, MASK, PAD, SPECIAL_TOKENS, UNK, Tokenizer

BASES = "ACGTN"
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")  # str.translate table
INVALID = 255

# 256-entry lookup: ASCII byte -> base code 0..4 (A C G T N), INVALID for anything outside IUPAC.
BASE_CODE_LUT = np.full(256, INVALID, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    BASE_CODE_LUT[ord(_b)] = BASE_CODE_LUT[ord(_b.lower())] = _i
for _b in "RYSWKMBDHVN":
    BASE_CODE_LUT[ord(_b)] = BASE_CODE_LUT[ord(_b.lower())] = 4
_CODE_TO_BYTE = np.frombuffer(BASES.encode(), dtype=np.uint8)
# The same lookup with only A C G T kept (0..3) and everything else -1, as int64 (k-mer counting).
ACGT_CODE_LUT = np.where(BASE_CODE_LUT < 4, BASE_CODE_LUT.astype(np.int64), -1)


def base_codes(seq: np.ndarray | bytes | str) -> np.ndarray:
    """Validate and map a nucleotide sequence to base codes uint8[N] in 0..4 (A C G T N)."""
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as e:
            raise ValueError(f"invalid nucleotide {seq[e.start]!r} at position {e.start}") from None
    arr = np.frombuffer(seq, dtype=np.uint8) if isinstance(seq, bytes | bytearray) else np.asarray(seq)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 ASCII bytes, got dtype {arr.dtype}")
    codes = BASE_CODE_LUT[arr]
    bad = np.flatnonzero(codes == INVALID)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"invalid nucleotide {chr(arr[i])!r} at position {i} (expected A C G T or an IUPAC code)"
        )
    return codes


def normalize(seq: str) -> str:
    """Upper-case, IUPAC ambiguity codes -> N, validated: the string every tokenizer actually encodes."""
    return _CODE_TO_BYTE[base_codes(seq)].tobytes().decode()


@runtime_checkable
class NucleotideTokenizerProtocol(Tokenizer, Protocol):
    """A DNA tokenizer: fixed bases per token and a complement map over the whole vocabulary."""

    bases_per_token: int
    complement_ids: torch.Tensor  # LongTensor[V]: token -> complement token; specials -> themselves

    def reverse_complement(self, ids: torch.Tensor) -> torch.Tensor: ...

    def encode_bytes(self, seq: np.ndarray) -> np.ndarray: ...


def _as_numpy_ids(ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return np.asarray(ids, dtype=np.int64).reshape(-1)


class _NucleotideBase:
    """Shared decode / reverse complement over an explicit id -> string table."""

    bases_per_token: int
    complement_ids: torch.Tensor
    token_bases: torch.Tensor  # LongTensor[V]: bases each token covers (0 for specials; < k for k-mer tails)
    _id_to_str: list[str]  # what `decode` writes for each id

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        arr = _as_numpy_ids(ids)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range [0, {self.vocab_size}): {arr.min()}..{arr.max()}")
        table = self._id_to_str
        return "".join(table[i] for i in arr.tolist())

    def reverse_complement(self, ids: torch.Tensor) -> torch.Tensor:
        """Reverse complement over the last dim: LongTensor[..., L] -> LongTensor[..., L] (specials kept)."""
        if isinstance(ids, np.ndarray):
            return self.complement_ids.numpy()[ids][..., ::-1].copy()
        return self.complement_ids.to(ids.device)[ids].flip(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, bases_per_token={self.bases_per_token})"


class NucleotideTokenizer(_NucleotideBase):
    """One token per base. Vocabulary: A=0 C=1 G=2 T=3 N=4 pad=5 mask=6 bos=7 eos=8 unk=9 (V=10)."""

    bases_per_token = 1

    def __init__(self) -> None:
        self.tokens = list(BASES) + list(SPECIAL_TOKENS)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)
        self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.unk_id = (
            self.vocab[t] for t in SPECIAL_TOKENS
        )
        self._id_to_str = [("-" if t == MASK else t) for t in self.tokens]
        comp = list(range(self.vocab_size))
        for a, b in zip("ACGTN", "TGCAN", strict=True):
            comp[self.vocab[a]] = self.vocab[b]
        self.complement_ids = torch.tensor(comp, dtype=torch.long)
        self.token_bases = torch.tensor([0 if t in SPECIAL_TOKENS else 1 for t in self.tokens], dtype=torch.long)

    def encode(self, text: str) -> list[int]:
        return base_codes(text).astype(np.int64).tolist() if text else []

    def encode_bytes(self, seq: np.ndarray) -> np.ndarray:
        """uint8 ASCII[N] -> int64[N]; the base code is the token id."""
        return base_codes(seq).astype(np.int64)

    def config(self) -> dict:
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}"}


class KmerTokenizer(_NucleotideBase):
    """Non-overlapping k-mers over ACGTN, built on HF `tokenizers` (WordLevel + Split on `.{1,k}`).

    Ids: the 5**k full k-mers first (id = base-5 number of the k-mer, A<C<G<T<N, first base most
    significant), then `[PAD] [MASK] [BOS] [EOS] [UNK]`, then the shorter tail k-mers (lengths 1..k-1) so any
    length round-trips exactly. k=1 reproduces the char vocabulary. Reverse complement of a token sequence
    (flip + `complement_ids`) equals the tokens of the reverse-complemented string when the length is a
    multiple of k (datamodules require window % k == 0); tail tokens map to their own reverse complement.
    """

    def __init__(self, k: int = 3) -> None:
        if not 1 <= k <= 8:
            raise ValueError(f"k must be in 1..8, got {k}")
        self.k = self.bases_per_token = k
        full = ["".join(p) for p in itertools.product(BASES, repeat=k)]
        tails = ["".join(p) for n in range(1, k) for p in itertools.product(BASES, repeat=n)]
        self.tokens = full + list(SPECIAL_TOKENS) + tails
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)
        self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.unk_id = (
            self.vocab[t] for t in SPECIAL_TOKENS
        )
        # first id of the tail k-mers of each length n < k (same base-5 order within a length)
        self._tail_offset = {n: self.vocab[BASES[0] * n] for n in range(1, k)}
        self._powers = 5 ** np.arange(k - 1, -1, -1, dtype=np.int64)
        self._id_to_str = [("-" * k if t == MASK else t) for t in self.tokens]
        self.complement_ids = torch.tensor(
            [
                i if t in SPECIAL_TOKENS else self.vocab[t[::-1].translate(COMPLEMENT)]
                for i, t in enumerate(self.tokens)
            ],
            dtype=torch.long,
        )
        self.token_bases = torch.tensor([0 if t in SPECIAL_TOKENS else len(t) for t in self.tokens], dtype=torch.long)
        self.hf_tokenizer = HFTokenizer(models.WordLevel(self.vocab, unk_token=UNK))
        self.hf_tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(f".{{1,{k}}}"), behavior="isolated")
        self.hf_tokenizer.add_special_tokens([PAD, MASK, BOS, EOS, UNK])

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return self.hf_tokenizer.encode(normalize(text), add_special_tokens=False).ids

    def encode_bytes(self, seq: np.ndarray) -> np.ndarray:
        """uint8 ASCII[N] -> int64[ceil(N / k)] without the HF round trip; equals `encode`."""
        codes = base_codes(seq).astype(np.int64)
        m = codes.size // self.k * self.k
        ids = codes[:m].reshape(-1, self.k) @ self._powers
        n_tail = codes.size - m
        if n_tail:
            tail = self._tail_offset[n_tail] + int(codes[m:] @ self._powers[self.k - n_tail :])
            ids = np.append(ids, tail)
        return ids

    def config(self) -> dict:
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", "k": self.k}

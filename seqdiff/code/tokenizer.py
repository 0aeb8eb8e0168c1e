"""Byte-level BPE for source code (HF `tokenizers`), trained on the training split of a code corpus.

Properties the rest of the code relies on (tested in tests/test_code_tokenizer.py):
- Exact round trip: `decode(encode(s)) == s` for any Unicode string (byte-level alphabet, no normaliser),
  including text that spells a special token such as "[MASK]": specials are never matched in input text.
- Line-aligned tokens: pre-tokens never cross a newline and a token holds at most one "\\n", at its end, so
  `encode(a + b) == encode(a) + encode(b)` whenever `a` ends with "\\n" (or is empty). A hole of whole lines
  is therefore an exact span of the file's tokens, and a left-to-right model can count lines by tokens.
- `config()` embeds the fitted tokenizer (zlib + base64 of its JSON, so OmegaConf never sees "${" in it):
  `hydra.utils.instantiate(tok.config())` rebuilds an identical tokenizer, which checkpoints rely on.

Special tokens (ids 0..5): [PAD] [MASK] [BOS] [EOS] [UNK] [EOM]. [EOM] ("end of middle") fills the unused
tail of a fill-in-the-middle hole, so a diffusion model can end a middle early inside a length budget.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import torch
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from seqdiff.tokenizers.base import BOS, EOS, MASK, PAD, SPECIAL_TOKENS, UNK

EOM = "[EOM]"
CODE_SPECIAL_TOKENS = (*SPECIAL_TOKENS, EOM)
_PACKED = "zlib+b64:"


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable character ByteLevel uses for each byte."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _new_hf_tokenizer() -> HFTokenizer:
    tok = HFTokenizer(models.BPE())
    # Split after every "\n" first, then GPT-2's byte-level regex: tokens never straddle a line break.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _pack(text: str) -> str:
    return _PACKED + base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def _unpack(text: str) -> str:
    if text.startswith(_PACKED):
        return zlib.decompress(base64.b64decode(text[len(_PACKED) :])).decode("utf-8")
    return text  # plain tokenizer JSON is accepted too


class CodeBPETokenizer:
    """Byte-level BPE tokenizer. Unfitted until `fit(texts)` or built from `tokenizer_json`."""

    def __init__(
        self, vocab_size: int = 4096, min_frequency: int = 2, tokenizer_json: str | None = None
    ) -> None:
        if vocab_size < 256 + len(CODE_SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size must be >= {256 + len(CODE_SPECIAL_TOKENS)} (bytes + specials), got {vocab_size}"
            )
        self.target_vocab_size = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self._hf: HFTokenizer | None = None
        self._json: str | None = None
        # Specials are always ids 0..5 (trained first), so they are known before fitting.
        self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.unk_id, self.eom_id = range(6)
        if tokenizer_json is not None:
            self.load_json(_unpack(tokenizer_json))

    # ---- fitting ------------------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._hf is not None

    def fit(self, texts: Iterable[str]) -> CodeBPETokenizer:
        """Train the BPE merges on `texts` (the corpus' training files only)."""
        hf = _new_hf_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=list(CODE_SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        self.load_json(hf.to_str())
        return self

    def load_json(self, tokenizer_json: str) -> None:
        """Adopt a fitted tokenizer from its HF JSON (what `fit` produces and `config()` embeds)."""
        hf = HFTokenizer.from_str(tokenizer_json)
        hf.encode_special_tokens = True  # "[MASK]" in source text is text, not the mask token
        ids = [hf.token_to_id(t) for t in CODE_SPECIAL_TOKENS]
        if ids != list(range(len(CODE_SPECIAL_TOKENS))):
            raise ValueError(f"tokenizer JSON must define {CODE_SPECIAL_TOKENS} as ids 0..5, got {ids}")
        self._hf, self._json = hf, tokenizer_json
        self.vocab_size = hf.get_vocab_size()
        u2b = _unicode_to_byte()
        self._bytes: list[bytes] = []
        for i in range(self.vocab_size):
            tok = hf.id_to_token(i)
            self._bytes.append(tok.encode() if i < len(CODE_SPECIAL_TOKENS) else bytes(u2b[c] for c in tok))
        self.special_ids = torch.arange(len(CODE_SPECIAL_TOKENS))
        # newline_count[id]: "\n" bytes in a token (0 or 1 by construction; specials 0).
        self.newline_count = torch.tensor(
            [0 if i < len(CODE_SPECIAL_TOKENS) else b.count(b"\n") for i, b in enumerate(self._bytes)]
        )

    def _require_fitted(self) -> HFTokenizer:
        if self._hf is None:
            raise RuntimeError(
                "CodeBPETokenizer is not fitted: call fit(texts) or build it from tokenizer_json "
                "(CodeDataModule fits it on the training files)"
            )
        return self._hf

    # ---- protocol -----------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self._require_fitted().encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Parallel (Rust) encoding of many texts."""
        return [e.ids for e in self._require_fitted().encode_batch(list(texts), add_special_tokens=False)]

    def token_bytes(self, token_id: int) -> bytes:
        self._require_fitted()
        return self._bytes[token_id]

    def decode_bytes(
        self, ids: Sequence[int] | np.ndarray | torch.Tensor, skip_special_tokens: bool = False
    ) -> bytes:
        self._require_fitted()
        if isinstance(ids, torch.Tensor | np.ndarray):
            ids = ids.tolist()
        n_special = len(CODE_SPECIAL_TOKENS)
        out = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} out of range [0, {self.vocab_size})")
            if not (skip_special_tokens and i < n_special):
                out.append(self._bytes[i])
        return b"".join(out)

    def decode(
        self, ids: Sequence[int] | np.ndarray | torch.Tensor, skip_special_tokens: bool = False
    ) -> str:
        """Specials decode to their bracketed names unless skipped; byte sequences that are not valid UTF-8
        (only possible for a cut or generated sequence) decode with U+FFFD."""
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", errors="replace")

    def config(self) -> dict:
        cfg: dict = {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "vocab_size": self.target_vocab_size,
            "min_frequency": self.min_frequency,
        }
        cfg["tokenizer_json"] = _pack(self._json) if self._json is not None else None
        return cfg

    def fingerprint(self) -> str:
        """Short stable id of the fitted vocabulary (cache keys)."""
        import hashlib

        return hashlib.sha1(self._require_fitted().to_str().encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        state = f"vocab_size={self.vocab_size}" if self.fitted else "unfitted"
        return f"CodeBPETokenizer({state})"

    def __getstate__(self) -> dict:  # HF objects pickle, but rebuilding from JSON is exact and portable
        return {"config": json.dumps(self.config())}

    def __setstate__(self, state: dict) -> None:
        cfg = json.loads(state["config"])
        self.__init__(cfg["vocab_size"], cfg["min_frequency"], cfg["tokenizer_json"])


__all__ = ["CodeBPETokenizer", "CODE_SPECIAL_TOKENS", "EOM", "PAD", "MASK", "BOS", "EOS", "UNK"]

"""Nucleotide tokenizers: vocabulary, normalisation, round trips, reverse complement, fast byte path."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer, NucleotideTokenizerProtocol
from seqdiff.tokenizers import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZERS = [NucleotideTokenizer(), KmerTokenizer(1), KmerTokenizer(2), KmerTokenizer(3)]
IDS = ["char", "k1", "k2", "k3"]
acgtn = st.text(alphabet="ACGTN", max_size=200)
iupac = st.text(alphabet="ACGTNRYSWKMBDHVacgtnryswkmbdhv", max_size=200)
COMP = str.maketrans("ACGTN", "TGCAN")


def rc_str(s: str) -> str:
    return s.translate(COMP)[::-1]


def normalise(s: str) -> str:
    s = s.upper()
    return "".join(c if c in "ACGT" else "N" for c in s)


def test_char_vocabulary_is_the_documented_one():
    tok = NucleotideTokenizer()
    assert tok.encode("ACGTN") == [0, 1, 2, 3, 4]
    assert (tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.vocab_size) == (
        5,
        6,
        7,
        8,
        9,
        10,
    )
    assert tok.complement_ids.tolist() == [3, 2, 1, 0, 4, 5, 6, 7, 8, 9]
    assert tok.decode([0, 6, 6, 3]) == "A--T" and tok.decode([5, 7, 8, 9]) == "[PAD][BOS][EOS][UNK]"


def test_kmer_vocabulary_layout():
    tok = KmerTokenizer(3)
    assert tok.vocab_size == 125 + 5 + 5 + 25 and tok.bases_per_token == 3
    assert tok.encode("AAAACG") == [0, 0 * 25 + 1 * 5 + 2]
    assert tok.decode([tok.mask_id]) == "---"
    assert len({tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id, tok.unk_id}) == 5
    k1 = KmerTokenizer(1)  # k=1 reproduces the char vocabulary
    assert k1.encode("ACGTN") == NucleotideTokenizer().encode("ACGTN") and k1.mask_id == 6


@pytest.mark.parametrize("tok", TOKENIZERS, ids=IDS)
def test_protocol_and_config_rebuild(tok):
    assert isinstance(tok, Tokenizer) and isinstance(tok, NucleotideTokenizerProtocol)
    rebuilt = instantiate(tok.config())
    assert type(rebuilt) is type(tok) and rebuilt.vocab_size == tok.vocab_size
    assert rebuilt.encode("ACGTNNACG") == tok.encode("ACGTNNACG")


@pytest.mark.parametrize("tok", TOKENIZERS, ids=IDS)
@pytest.mark.parametrize("bad,pos", [("ACGXT", 3), ("AC GT", 2), ("ACG-", 3), ("ACé", 2), ("U", 0)])
def test_invalid_characters_named_with_position(tok, bad, pos):
    with pytest.raises(ValueError, match=rf"{bad[pos]!r} at position {pos}"):
        tok.encode(bad)
    if bad.isascii():
        with pytest.raises(ValueError, match=rf"{bad[pos]!r} at position {pos}"):
            tok.encode_bytes(np.frombuffer(bad.encode(), np.uint8))


@pytest.mark.parametrize("tok", TOKENIZERS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(s=iupac)
def test_round_trip_normalises(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == normalise(s)
    assert len(ids) == -(-len(s) // tok.bases_per_token)
    assert all(0 <= i < tok.vocab_size for i in ids)


@pytest.mark.parametrize("tok", TOKENIZERS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(s=iupac)
def test_encode_bytes_equals_encode(tok, s):
    out = tok.encode_bytes(np.frombuffer(s.encode(), np.uint8))
    assert out.dtype == np.int64 and out.tolist() == tok.encode(s)


@pytest.mark.parametrize("tok", TOKENIZERS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(s=acgtn, data=st.data())
def test_reverse_complement(tok, s, data):
    k = tok.bases_per_token
    s = s[: len(s) // k * k]  # token-level RC equals string RC for whole k-mers
    ids = torch.tensor(tok.encode(s), dtype=torch.long)
    rc = tok.reverse_complement(ids)
    assert rc.tolist() == tok.encode(rc_str(s))
    assert torch.equal(tok.reverse_complement(rc), ids)
    # batched, with specials (mask/pad) kept in place mirrored
    n_special = data.draw(st.integers(0, 3))
    x = torch.cat([ids, torch.full((n_special,), tok.mask_id)]).repeat(2, 1)
    assert torch.equal(tok.reverse_complement(tok.reverse_complement(x)), x)
    assert (tok.reverse_complement(x)[:, :n_special] == tok.mask_id).all()


def test_complement_is_an_involution_on_every_token():
    for tok in TOKENIZERS:
        c = tok.complement_ids
        assert torch.equal(c[c], torch.arange(tok.vocab_size))


def test_encode_bytes_real_dna_fixture():
    seq = (FIXTURES / "chr20_300kb.fa").read_text().split(">chr20b")[0].split("\n", 1)[1].replace("\n", "")
    arr = np.frombuffer(seq.encode(), np.uint8)
    for tok in TOKENIZERS:
        ids = tok.encode_bytes(arr)
        assert ids.tolist() == tok.encode(seq) and tok.decode(ids) == seq

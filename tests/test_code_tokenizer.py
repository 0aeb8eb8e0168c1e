"""Byte-level BPE for code: exact round trip, line alignment, config rebuild, specials never read from text."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff.code.tokenizer import CODE_SPECIAL_TOKENS, CodeBPETokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ["bisect.py", "heapq.py", "string.py", "textwrap.py", "keyword.py", "colorsys.py", "fnmatch.py"]


@pytest.fixture(scope="module")
def tok() -> CodeBPETokenizer:
    texts = [(STDLIB / f).read_text(encoding="utf-8") for f in FILES]
    return CodeBPETokenizer(vocab_size=600).fit(texts)


# Source-like text: Python snippets, arbitrary Unicode, the spellings of special tokens, odd newlines.
source_text = st.lists(
    st.one_of(
        st.text(),
        st.sampled_from(["def f(x):\n", "    return x  # ü\n", "\t\tpass\r\n", "\n\n", "${x}", "'''é🐍'''",
                         *CODE_SPECIAL_TOKENS, "[MASK", "\x00", "\u2028", "\x0c"]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=source_text)
def test_round_trip_arbitrary_unicode(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i >= len(CODE_SPECIAL_TOKENS) for i in ids), "text must never encode to a special token"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=source_text, b=source_text)
def test_tokens_are_line_aligned(tok, a, b):
    a = a + "\n"  # a prefix of whole lines
    assert tok.encode(a + b) == tok.encode(a) + tok.encode(b)
    assert all(tok.newline_count[i] <= 1 for i in tok.encode(a + b))


def test_real_file_round_trip_and_compression(tok):
    text = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(text.encode()) / len(ids) > 2.0  # BPE merges actually compress code
    assert tok.encode_batch([text, "x = 1\n"]) == [ids, tok.encode("x = 1\n")]


def test_config_rebuilds_identical_tokenizer(tok):
    cfg = tok.config()
    rebuilt = instantiate(cfg)  # through OmegaConf: the packed JSON must survive interpolation syntax
    assert rebuilt.config() == cfg
    assert rebuilt.vocab_size == tok.vocab_size
    text = (STDLIB / "heapq.py").read_text(encoding="utf-8")
    assert rebuilt.encode(text) == tok.encode(text)


def test_interpolation_syntax_in_vocab_survives_instantiate():
    t = CodeBPETokenizer(vocab_size=300, min_frequency=1).fit(["x = '${name}' ${a} ${b}\n" * 50])
    assert any("${" in t.decode([i]) for i in range(t.vocab_size)), "fixture should merge '${'"
    assert instantiate(t.config()).config() == t.config()


def test_specials_and_errors(tok):
    assert [tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.eom_id] == list(range(6))
    assert tok.decode([tok.mask_id, tok.eom_id]) == "[MASK][EOM]"
    assert tok.decode([tok.bos_id, *tok.encode("x\n"), tok.eom_id], skip_special_tokens=True) == "x\n"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(RuntimeError, match="not fitted"):
        CodeBPETokenizer().encode("x")
    with pytest.raises(ValueError, match="vocab_size"):
        CodeBPETokenizer(vocab_size=100)

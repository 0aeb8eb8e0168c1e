"""Code corpus: deterministic file split, no test directories, cached memmap, windows with [EOM] runs."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from seqdiff.code.data import CodeDataModule, list_files, read_source, split_of
from seqdiff.code.tokenizer import CodeBPETokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ["bisect.py", "heapq.py", "string.py", "textwrap.py", "keyword.py", "colorsys.py", "fnmatch.py",
         "glob.py", "shlex.py", "queue.py", "sched.py", "stat.py", "json/encoder.py", "json/decoder.py"]


def make_corpus(root: Path) -> Path:
    """A handful of real stdlib files, plus a test directory and a non-UTF-8 file that must be skipped."""
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(STDLIB / f, root / f)
    (root / "test").mkdir()
    (root / "test" / "test_x.py").write_text("assert False\n")
    (root / "json" / "tests").mkdir()
    (root / "json" / "tests" / "test_y.py").write_text("assert False\n")
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    return root


def test_split_is_a_function_of_the_path():
    assert split_of("os.py") == split_of("os.py")
    splits = [split_of(f"pkg/mod{i}.py") for i in range(2000)]
    frac = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert 0.03 < frac["test"] < 0.07 and 0.03 < frac["valid"] < 0.07
    stdlib = list_files(STDLIB)
    assert not [f for f in stdlib if {"test", "tests", "idle_test", "site-packages"} & set(f.split("/"))]
    assert "os.py" in stdlib and len(stdlib) > 300


def test_datamodule_fits_tokenizer_caches_and_batches(tmp_path):
    root = make_corpus(tmp_path / "lib")
    assert "test/test_x.py" not in list_files(root) and "json/tests/test_y.py" not in list_files(root)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_source(root / "latin1.py")
    kw = dict(root=str(root), window=32, batch_size=4, cache_dir=str(tmp_path / "cache"), valid_fraction=0.25,
              test_fraction=0.25, fim_rate=1.0, fim_max_lines=2, fim_pad_per_line=4)
    tok = CodeBPETokenizer(vocab_size=400)
    dm = CodeDataModule(tok, **kw)
    assert tok.fitted and dm.window == 32 and dm.batch_size == 4
    assert all(dm.files[s] for s in ("train", "valid", "test"))
    for s in ("train", "valid", "test"):
        assert all(dm.split(f) == s for f in dm.files[s])
    # the tokenizer was fitted on the training files only, and the stream is [BOS] file [EOS] ...
    train = [t for t in dm.texts("train")]
    stream = np.asarray(dm.tokens["train"])
    assert stream[0] == tok.bos_id and (stream == tok.eos_id).sum() == len(train)
    assert tok.decode(stream[1 : 1 + len(tok.encode(train[0]))]) == train[0]

    batch = next(iter(dm.train_dataloader()))
    x0 = batch["x0"]
    assert x0.shape == (4, 32) and x0.dtype.is_floating_point is False
    eom_rows = [row for row in x0.tolist() if tok.eom_id in row]
    assert eom_rows, "fim_rate=1 should put [EOM] runs in training windows"
    for row in eom_rows:  # one contiguous run, right after a line break
        pos = [i for i, t in enumerate(row) if t == tok.eom_id]
        assert pos == list(range(pos[0], pos[-1] + 1))
        assert pos[0] > 0 and tok.newline_count[row[pos[0] - 1]] == 1
    val = next(iter(dm.val_dataloader()))["x0"]
    assert tok.eom_id not in val.flatten().tolist()

    # a second datamodule reuses the cached tokenizer and memmaps
    tok2 = CodeBPETokenizer(vocab_size=400)
    dm2 = CodeDataModule(tok2, **kw)
    assert tok2.config() == tok.config()
    assert np.array_equal(np.asarray(dm2.tokens["test"]), np.asarray(dm.tokens["test"]))
    assert (dm2.dataset("train")[3]["x0"] == dm.dataset("train")[3]["x0"]).all()  # windows are seeded


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        CodeDataModule(CodeBPETokenizer(), root=str(tmp_path / "nope"))

"""Downstream task loaders on real-data fixtures: labels, lengths, class balance, and clear errors."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdiff.dna.downstream.data import carve_validation, encode_sequences
from seqdiff.dna.downstream.genome_task import build_coding_task, read_gff
from seqdiff.dna.downstream.splice import N_ROWS, N_TRAIN, decode_bits, load_splice
from seqdiff.dna.downstream.tasks import Task, genomic_benchmarks_task, labeled_task
from seqdiff.dna.tokenizer import NucleotideTokenizer

FIX = Path(__file__).parent / "fixtures" / "downstream"


@pytest.fixture(scope="module")
def splice_rows() -> pd.DataFrame:
    frame = pd.read_csv(FIX / "splice_bits_30.csv", dtype=str)
    bits = np.array([[int(b) for b in s] for s in frame["bits"]], dtype=np.uint8)
    return frame.assign(sequence=decode_bits(bits))


def test_splice_bits_decode_to_junction_consensus(splice_rows):
    assert len(splice_rows) == 30 and Counter(splice_rows["label"]) == {"ei": 10, "ie": 10, "n": 10}
    assert all(len(s) == 60 and set(s) <= set("ACGT") for s in splice_rows["sequence"])
    donors = splice_rows[splice_rows["label"] == "ei"]["sequence"]
    acceptors = splice_rows[splice_rows["label"] == "ie"]["sequence"]
    assert all(s[30:32] == "GT" for s in donors)  # 1-based positions 31-32
    assert all(s[28:30] == "AG" for s in acceptors)
    # a swapped bit order would break the consensus above; all four bases occur
    assert set("".join(splice_rows["sequence"])) == set("ACGT")


def test_decode_bits_rejects_invalid_triple():
    bits = np.zeros((1, 6), dtype=np.uint8)
    bits[0, 3:6] = 1  # 111 is not a base
    with pytest.raises(ValueError, match="position 2"):
        decode_bits(bits)


def test_splice_loader_full_data():
    """The real data (fetched from Debian on first use, ~1 MB, then cached in data_cache/splice)."""
    data = load_splice()
    assert len(data.sequences) == N_ROWS and all(len(s) == 60 for s in data.sequences)
    assert Counter(data.labels) == {"n": 1654, "ei": 767, "ie": 765}
    assert data.split.count("train") == N_TRAIN and data.split[:N_TRAIN] == ["train"] * N_TRAIN
    train_counts = Counter(data.part("train")[1])
    assert train_counts == {"n": 1051, "ie": 485, "ei": 464}


def test_genomic_benchmarks_fixture():
    task = genomic_benchmarks_task(str(FIX / "genomic_benchmarks"), "yeast_coding_mini")
    s = task.summary()
    assert task.classes == ("coding", "intergenic")
    assert s["train"]["class_counts"] == {"coding": 6, "intergenic": 6}
    assert s["test"]["class_counts"] == {"coding": 3, "intergenic": 3}
    assert s["train"]["min_len"] == s["train"]["max_len"] == 200
    assert task.label_ids(["intergenic", "coding"]) == [1, 0]


def test_genomic_benchmarks_bad_layouts(tmp_path):
    root = tmp_path / "gb"
    shutil.copytree(FIX / "genomic_benchmarks", root)
    with pytest.raises(FileNotFoundError, match="not found"):
        genomic_benchmarks_task(str(root), "no_such_benchmark")
    (root / "yeast_coding_mini" / "train" / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class is empty"):
        genomic_benchmarks_task(str(root), "yeast_coding_mini")
    (root / "yeast_coding_mini" / "train" / "empty_class").rmdir()
    novel = root / "yeast_coding_mini" / "test" / "promoter"
    novel.mkdir()
    (novel / "0.txt").write_text("ACGT" * 50)
    with pytest.raises(ValueError, match=r"test labels \['promoter'\] never occur in train"):
        genomic_benchmarks_task(str(root), "yeast_coding_mini")


def _write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    path.write_text("".join(f">{header}\n{seq}\n" for header, seq in records))


def test_labeled_fasta_and_csv(tmp_path, splice_rows):
    rows = list(zip(splice_rows["row"], splice_rows["sequence"], splice_rows["label"], strict=True))
    _write_fasta(tmp_path / "train.fa", [(f"r{r} label={y} src=statlog", s) for r, s, y in rows[::2]])
    _write_fasta(tmp_path / "test.fa", [(f"r{r}|{y}", s) for r, s, y in rows[1::2]])  # `id|label` form
    task = labeled_task(str(tmp_path / "train.fa"), str(tmp_path / "test.fa"))
    assert task.name == "train" and task.classes == ("ei", "ie", "n")
    assert len(task.train_sequences) == 15 and len(task.test_sequences) == 15
    assert task.train_sequences[0] == rows[0][1] and task.test_labels[0] == rows[1][2]
    frame = pd.DataFrame({"sequence": splice_rows["sequence"], "label": splice_rows["label"]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    task = labeled_task(str(tmp_path / "a.csv"), str(tmp_path / "a.csv"), name="csv")
    assert Counter(task.train_labels) == {"ei": 10, "ie": 10, "n": 10}


def test_labeled_errors(tmp_path):
    _write_fasta(tmp_path / "nolabel.fa", [("seq1", "ACGT")])
    with pytest.raises(ValueError, match="record #0 .*no label"):
        labeled_task(str(tmp_path / "nolabel.fa"), str(tmp_path / "nolabel.fa"))
    (tmp_path / "bad.csv").write_text("seq,class\nACGT,a\n")
    with pytest.raises(ValueError, match="missing column"):
        labeled_task(str(tmp_path / "bad.csv"), str(tmp_path / "bad.csv"))
    with pytest.raises(FileNotFoundError):
        labeled_task(str(tmp_path / "missing.fa"), str(tmp_path / "missing.fa"))
    _write_fasta(tmp_path / "tr.fa", [("a label=x", "ACGT"), ("b label=y", "ACGA")])
    _write_fasta(tmp_path / "te.fa", [("a label=x", "ACGT"), ("b label=z", "ACGA")])
    with pytest.raises(ValueError, match=r"\['z'\] never occur in train"):
        labeled_task(str(tmp_path / "tr.fa"), str(tmp_path / "te.fa"))


def test_task_validation():
    with pytest.raises(ValueError, match="single class"):
        Task("t", ["ACGT", "ACGA"], ["a", "a"], ["ACGT"], ["a"])
    with pytest.raises(ValueError, match="test set is empty"):
        Task("t", ["ACGT", "ACGA"], ["a", "b"], [], [])


def test_yeast_coding_task_from_fixture(tmp_path):
    rec = build_coding_task(FIX / "yeast_chrI_1-40000.fa", FIX / "yeast_chrI_1-40000.gff", tmp_path,
                            window=200, stride=100, test_fraction=0.3, seed=0)
    train, test = pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv")
    for frame in (train, test):  # balanced, right length, both classes
        counts = Counter(frame["label"])
        assert set(counts) == {"coding", "intergenic"} and counts["coding"] == counts["intergenic"]
        assert (frame["sequence"].str.len() == 200).all()
    assert train["start"].max() + 200 <= rec["boundary"] <= test["start"].min()  # split by position
    gff = read_gff(FIX / "yeast_chrI_1-40000.gff")
    cds = gff[gff.type == "CDS"][["start", "end"]].to_numpy()
    feats = gff[gff.type != "region"][["start", "end"]].to_numpy()
    for s, y in zip(train["start"], train["label"], strict=True):
        inside = ((cds[:, 0] <= s) & (cds[:, 1] >= s + 200)).any()
        touches = ((feats[:, 0] < s + 200) & (feats[:, 1] > s)).any()
        assert inside if y == "coding" else not touches
    # deterministic: same parameters -> identical files
    build_coding_task(FIX / "yeast_chrI_1-40000.fa", FIX / "yeast_chrI_1-40000.gff", tmp_path / "again",
                      window=200, stride=100, test_fraction=0.3, seed=0)
    assert (tmp_path / "again" / "train.csv").read_text() == (tmp_path / "train.csv").read_text()


def test_long_sequence_policies(caplog):
    tok = NucleotideTokenizer()
    seqs = ["ACGT" * 5, "A" * 8 + "CCCC" + "G" * 8]  # lengths 20, 20
    with pytest.raises(ValueError, match="exceed the model window of 10 tokens.*long_sequences=truncate"):
        encode_sequences(seqs, tok, 10, "error")
    with caplog.at_level(logging.WARNING, logger="seqdiff.downstream"):
        out = encode_sequences(seqs, tok, 10, "truncate", "demo")
    assert "2 of 2 demo sequences exceed the model window of 10 tokens" in caplog.text
    assert "truncating them to their central 10 tokens" in caplog.text
    assert tok.decode(out[1]) == "AAACCCCGGG"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="seqdiff.downstream"):
        out = encode_sequences(seqs, tok, 10, "tile", "demo")
    assert "tiling them into up to 2 windows" in caplog.text and len(out[0]) == 20
    with pytest.raises(ValueError, match="demo sequence #0: invalid nucleotide 'X'"):
        encode_sequences(["AXGT"], tok, 10, "truncate", "demo")


def test_carve_validation_is_stratified_and_seeded():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    tr, va = carve_validation(labels, 0.1, seed=0)
    assert len(va) == 10 and set(tr).isdisjoint(va) and len(tr) + len(va) == 100
    assert Counter(labels[i] for i in va) == {0: 6, 1: 3, 2: 1}
    assert not np.array_equal(va, carve_validation(labels, 0.1, seed=1)[1])
    assert np.array_equal(va, carve_validation(labels, 0.1, seed=0)[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(12, 150), width=st.integers(5, 60), stride=st.integers(1, 60), block=st.integers(1, 12),
       seed=st.integers(0, 10_000), data=st.data())
def test_blocked_carve_never_validates_on_trained_bases(n, width, stride, block, seed, data):
    """Genome tasks (windows with chromosome spans): validation = every 10th block of `block` neighbouring
    windows (offset by the seed); no kept training window overlaps a validation window; all classes on both
    sides (or a clear error); deterministic per seed."""
    labels = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n))
    starts = np.random.default_rng(seed).permutation(np.arange(n) * stride)  # any file order
    spans = [(int(s), int(s) + width) for s in starts]
    try:
        tr, va = carve_validation(labels, 0.1, seed, spans, block=block)
    except ValueError as e:  # allowed only when a class is missing on one side
        assert "misses a class" in str(e) or "leaves a class out" in str(e)
        return
    rank = np.argsort(np.argsort(starts, kind="stable"), kind="stable")  # chromosome order of each window
    assert set(va) == {i for i in range(n) if (rank[i] // block) % 10 == seed % 10}
    assert set(tr).isdisjoint(va)
    assert all(spans[i][1] <= spans[j][0] or spans[i][0] >= spans[j][1] for i in tr for j in va)
    dropped = set(range(n)) - set(tr) - set(va)  # only windows that overlap validation are dropped
    assert all(any(spans[i][1] > spans[j][0] and spans[i][0] < spans[j][1] for j in va) for i in dropped)
    assert {labels[i] for i in tr} == {labels[i] for i in va} == {0, 1}
    assert np.array_equal(va, carve_validation(labels, 0.1, seed, spans, block=block)[1])


def test_blocked_carve_errors():
    with pytest.raises(ValueError, match="3 spans for 4 training sequences"):
        carve_validation([0, 1, 0, 1], 0.25, 0, [(0, 10), (10, 20), (20, 30)])
    with pytest.raises(ValueError, match="misses a class"):  # the classes sit in two halves of the chromosome
        carve_validation([0] * 50 + [1] * 50, 0.1, 0, [(10 * i, 10 * i + 10) for i in range(100)])

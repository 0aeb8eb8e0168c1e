"""Labelled-DNA classification tasks: what a task is and the loaders Hydra's `task=` group builds.

Every loader returns a `Task` (train and test sequences with string labels). Classes are the sorted labels
of the training set; a test label the training set never shows is an error, not a silent extra class.
Validation data are carved from train by the protocol (`data.carve_validation`), never from test.

- `splice_task`: UCI/StatLog primate splice junctions (seqdiff.dna.downstream.splice), fixed 2,000 / 1,186 split.
- `genomic_benchmarks_task`: the layout the `genomic-benchmarks` package writes,
  `<root>/<name>/{train,test}/<class>/*.txt`, one sequence per file.
- `labeled_task`: a FASTA whose headers carry the label (`label=NAME` token, else the last `|` field) or a
  CSV with `sequence,label` columns; one file for train, one for test.
- `genome_task` (genome_task.py): windows from a catalogued genome and its RefSeq GFF3, split by position:
  `yeast_coding`, `fly_coding` (coding vs intergenic) and `arabidopsis_promoter` (upstream of a gene vs background).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("seqdiff.downstream")


@dataclass
class Task:
    name: str
    train_sequences: list[str]
    train_labels: list[str]
    test_sequences: list[str]
    test_labels: list[str]
    # where each sequence came from, for error messages ("train.csv line 7", "te.fa record #3 ('id')");
    # None: "task NAME train sequence #i"
    train_rows: list[str] | None = None
    test_rows: list[str] | None = None
    train_source: str | None = None  # the training file (named when the whole file is at fault)
    # genome tasks: each training sequence's (start, end) on its chromosome -> validation is carved as a block
    # of neighbouring windows, never a window overlapping one trained on (data.carve_validation)
    train_spans: list[tuple[int, int]] | None = None
    classes: tuple[str, ...] = field(init=False)  # sorted training labels; class index = position here

    def __post_init__(self) -> None:
        from seqdiff.dna.tokenizer import normalize

        for part, seqs, labels in (("train", self.train_sequences, self.train_labels),
                                   ("test", self.test_sequences, self.test_labels)):
            if len(seqs) != len(labels):
                raise ValueError(f"task {self.name}: {len(seqs)} {part} sequences but {len(labels)} labels")
            if not seqs:
                raise ValueError(f"task {self.name}: the {part} set is empty")
            for i, s in enumerate(seqs):
                if not s:
                    raise ValueError(f"{self.where(part, i)}: empty sequence")
                try:
                    normalize(s)
                except ValueError as e:
                    raise ValueError(f"{self.where(part, i)}: {e}") from None
        self.classes = tuple(sorted(set(self.train_labels)))
        if len(self.classes) < 2:
            raise ValueError(f"{self.train_source or f'task {self.name}'}: the training set has a single class "
                             f"{self.classes[0]!r} (a classifier needs at least 2)")
        unknown = sorted(set(self.test_labels) - set(self.classes))
        if unknown:
            i = next(i for i, y in enumerate(self.test_labels) if y in unknown)
            raise ValueError(f"{self.where('test', i)}: test labels {unknown} never occur in train (train classes: "
                             f"{list(self.classes)})")

    def where(self, part: str, i: int) -> str:
        """Where sequence i of `part` (train | test) came from, for error messages."""
        rows = self.train_rows if part == "train" else self.test_rows
        return rows[i] if rows is not None else f"task {self.name} {part} sequence #{i}"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def label_ids(self, labels: list[str]) -> list[int]:
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[y] for y in labels]

    def summary(self) -> dict:
        """Sizes, class counts and length range per split (logged by every entry point)."""
        out: dict = {"name": self.name, "classes": list(self.classes)}
        for part, seqs, labels in (("train", self.train_sequences, self.train_labels),
                                   ("test", self.test_sequences, self.test_labels)):
            lengths = [len(s) for s in seqs]
            out[part] = {"n": len(seqs), "class_counts": dict(sorted(Counter(labels).items())),
                         "min_len": min(lengths), "max_len": max(lengths)}
        return out


def splice_task(cache_dir: str = "data_cache/splice") -> Task:
    from seqdiff.dna.downstream.splice import load_splice

    data = load_splice(cache_dir)
    (xtr, ytr), (xte, yte) = data.part("train"), data.part("test")
    return Task("splice", xtr, ytr, xte, yte)


def genomic_benchmarks_task(root: str, name: str) -> Task:
    """Read `<root>/<name>/{train,test}/<class>/*.txt` (files sorted by name; whitespace stripped)."""
    base = Path(root) / name
    if not base.is_dir():
        raise FileNotFoundError(f"genomic benchmark {name!r} not found: no directory {base} (expected "
                                f"{base}/{{train,test}}/<class>/*.txt, as written by the genomic-benchmarks package)")
    parts = {}
    for part in ("train", "test"):
        d = base / part
        class_dirs = sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
        if not class_dirs:
            raise FileNotFoundError(f"{d} has no class folders")
        seqs, labels, rows = [], [], []
        for cdir in class_dirs:
            files = sorted(cdir.glob("*.txt"))
            if not files:
                raise ValueError(f"class folder {cdir} is empty (no *.txt sequence files)")
            for f in files:
                seqs.append("".join(f.read_text().split()))
                labels.append(cdir.name)
                rows.append(str(f))
        parts[part] = (seqs, labels, rows)
    (xtr, ytr, rtr), (xte, yte, rte) = parts["train"], parts["test"]
    return Task(name, xtr, ytr, xte, yte, train_rows=rtr, test_rows=rte, train_source=str(base / "train"))


def _label_from_header(header: str) -> str:
    for token in header.split():
        if token.startswith("label="):
            return token[len("label="):]
    if "|" in header:
        return header.split()[0].rsplit("|", 1)[-1]
    raise ValueError("no label in header (use `>id label=NAME` or `>id|NAME`)")


def read_labeled(path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Sequences, labels and row names ("FILE line N" / "FILE record #i ('id')") from a FASTA (label in the
    header) or a CSV/TSV with `sequence,label` columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled sequence file not found: {path}")
    if path.suffix.lower() in {".csv", ".tsv"}:
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                            keep_default_na=False)
        missing = {"sequence", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {list(frame.columns)}")
        rows = [f"{path} line {i + 2}" for i in range(len(frame))]  # line 1 is the header
        return frame["sequence"].str.strip().tolist(), frame["label"].str.strip().tolist(), rows
    from Bio import SeqIO

    seqs, labels, rows = [], [], []
    for i, rec in enumerate(SeqIO.parse(path, "fasta")):
        try:
            labels.append(_label_from_header(rec.description))
        except ValueError as e:
            raise ValueError(f"{path}: record #{i} ({rec.id!r}): {e}") from None
        seqs.append(str(rec.seq))
        rows.append(f"{path} record #{i} ({rec.id!r})")
    if not seqs:
        raise ValueError(f"{path}: no FASTA records (or a CSV without a .csv suffix)")
    return seqs, labels, rows


def labeled_task(train: str, test: str, name: str | None = None) -> Task:
    (xtr, ytr, rtr), (xte, yte, rte) = read_labeled(train), read_labeled(test)
    return Task(name or Path(train).stem, xtr, ytr, xte, yte, train_rows=rtr, test_rows=rte, train_source=train)

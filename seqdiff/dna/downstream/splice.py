"""UCI/StatLog primate splice-junction data (3,186 x 60 nt; classes ei / ie / n), obtained offline.

Source: the Debian package r-cran-mlbench (2.1-3-1), member `./usr/lib/R/site-library/mlbench/data/DNA.rda`,
the StatLog version of the UCI "Molecular Biology (Splice-junction Gene Sequences)" data. It stores each
sequence as 180 binary columns, 3 per position: A=100, C=010, G=001, T=000 (the StatLog coding, which has no
symbol for the few ambiguous bases of the UCI original). Classes: `ei` exon->intron boundary (donor),
`ie` intron->exon boundary (acceptor), `n` neither. The junction lies between positions 30 and 31, so `ei`
rows read the donor consensus GT at positions 31-32 (1-based; 759 of 767, the rest are non-canonical donors
such as GC) and `ie` rows the acceptor AG at 29-30 (761 of 765); `parse_dna_rda` checks both (>= 98%), which
catches a wrong bit order or a shifted frame.

Split (fixed): the first 2,000 rows are the training set and the last 1,186 the test set, as in StatLog
(`dna.data` -> `dna.trn` 2,000 / `dna.tst` 1,186; the same split as LIBSVM's `dna.scale` / `dna.scale.t`).
Published accuracies on it are about 95-96%. Note: the data hold 3,001 distinct sequences in 3,186 rows, and 82
test rows repeat a training sequence (as in StatLog; kept so numbers stay comparable).

The .deb is downloaded once (verified by sha256) and the parsed table cached as `data_cache/splice/splice.csv`
(git-ignored).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqdiff.io import write_csv

log = logging.getLogger("seqdiff.dna.downstream.splice")

DEB_SPEC = {
    "path": "DNA.rda",
    "fetch": {
        "kind": "deb",
        "url": "http://deb.debian.org/debian/pool/main/r/r-cran-mlbench/r-cran-mlbench_2.1-3-1_amd64.deb",
        "sha256": "2f1127f7b5e7d08703b13b52ef1976a0c355a7660d6ac575e29b87b13921bc06",
        "apt_package": "r-cran-mlbench",  # fallback when the pool file moved; the member checksum still holds
        "member": "./usr/lib/R/site-library/mlbench/data/DNA.rda",
        "member_sha256": "df941ad89a49f705a29bf38e52c91dc34029539cedb13fa24f803f1224278c9e",
    },
}
N_ROWS, SEQ_LEN, N_TRAIN = 3186, 60, 2000
CLASSES = ("ei", "ie", "n")
# 3-bit code of each base in the StatLog encoding (A=100, C=010, G=001, T=000)
_BITS_TO_BASE = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}


@dataclass(frozen=True)
class SpliceData:
    sequences: list[str]  # 60-nt upper-case ACGT strings
    labels: list[str]  # "ei" | "ie" | "n"
    split: list[str]  # "train" (first 2,000 rows) | "test"

    def part(self, name: str) -> tuple[list[str], list[str]]:
        idx = [i for i, s in enumerate(self.split) if s == name]
        return [self.sequences[i] for i in idx], [self.labels[i] for i in idx]


def decode_bits(bits: np.ndarray) -> list[str]:
    """uint8[N, 180] StatLog bits -> N strings of 60 bases. Raises ValueError on an invalid 3-bit code."""
    if bits.ndim != 2 or bits.shape[1] % 3:
        raise ValueError(f"expected [N, 3*L] bits, got shape {bits.shape}")
    triples = bits.reshape(bits.shape[0], -1, 3).astype(np.int64)  # (N, L, 3)
    code = triples @ np.array([4, 2, 1])  # A=4 C=2 G=1 T=0; anything else is invalid
    lut = np.full(8, "?")
    for (a, c, g), base in _BITS_TO_BASE.items():
        lut[4 * a + 2 * c + g] = base
    chars = lut[code]
    bad = np.argwhere(chars == "?")
    if bad.size:
        r, p = bad[0]
        raise ValueError(f"row {r}, position {p + 1}: bit triple {tuple(triples[r, p])} is not a base code")
    return ["".join(row) for row in chars]


def parse_dna_rda(path: str | Path) -> SpliceData:
    """Read mlbench's DNA.rda with `rdata` and decode it; checks size, classes and the GT donor consensus."""
    import rdata  # imported here: only this loader needs it

    try:
        with warnings.catch_warnings():  # the file declares no string encoding; its strings are ASCII
            warnings.filterwarnings("ignore", message="Unknown encoding")
            frame = rdata.conversion.convert(rdata.parser.parse_file(Path(path)))["DNA"]
    except Exception as e:  # truncated download, not an R data file, no DNA object
        raise ValueError(f"{path} is not mlbench's DNA.rda: {type(e).__name__}: {e}") from None
    if frame.shape != (N_ROWS, 3 * SEQ_LEN + 1):
        raise ValueError(f"{path}: expected a {N_ROWS} x {3 * SEQ_LEN + 1} table, got {frame.shape}")
    bits = frame.iloc[:, : 3 * SEQ_LEN].astype(int).to_numpy(dtype=np.uint8)
    sequences = decode_bits(bits)
    labels = [str(c) for c in frame["Class"]]
    if set(labels) != set(CLASSES):
        raise ValueError(f"{path}: unexpected classes {sorted(set(labels))}")
    for cls, where, motif in (("ei", slice(30, 32), "GT"), ("ie", slice(28, 30), "AG")):
        rows = [s for s, y in zip(sequences, labels, strict=True) if y == cls]
        hits = sum(s[where] == motif for s in rows)
        if hits < 0.98 * len(rows):
            raise ValueError(
                f"{path}: only {hits} of {len(rows)} {cls} rows read {motif} at positions "
                f"{where.start + 1}-{where.stop}; the bit decoding or frame is wrong"
            )
    split = ["train" if i < N_TRAIN else "test" for i in range(N_ROWS)]
    return SpliceData(sequences, labels, split)


def load_splice(cache_dir: str | Path = "data_cache/splice", progress: bool = False) -> SpliceData:
    """The splice data, fetched and parsed on first use; later calls read `<cache_dir>/splice.csv`."""
    cache_dir = Path(cache_dir)
    csv = cache_dir / "splice.csv"
    if not csv.is_file():
        from seqdiff.dna.fetch import _obtain  # the catalogue's deb fetcher: download, sha256, apt fallback

        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
            log.info("fetching %s", DEB_SPEC["fetch"]["url"])
            data = parse_dna_rda(_obtain(DEB_SPEC, Path(tmp), progress))
        frame = pd.DataFrame({"sequence": data.sequences, "label": data.labels, "split": data.split})
        write_csv(frame, csv, index=False)
        log.info("wrote %s (%d rows)", csv, len(frame))
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if list(frame.columns) != ["sequence", "label", "split"] or len(frame) != N_ROWS:
        raise ValueError(f"{csv} is not a splice cache (delete it to rebuild)")
    return SpliceData(frame["sequence"].tolist(), frame["label"].tolist(), frame["split"].tolist())

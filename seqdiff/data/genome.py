"""Genome access: a FASTA turned once into per-chromosome upper-case byte caches (numpy memmaps), and splits.

Why a cache: random windows from a memmap cost one slice, with no parsing, in any DataLoader worker.
The cache is built by streaming the FASTA line by line, which is also where it is validated (a bad byte is
reported with its file and line). It lives in `<fasta dir>/cache/` unless `cache_dir` says otherwise, and is
rebuilt when the FASTA's size or mtime changes. Bytes are A C G T N (IUPAC ambiguity codes become N).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from seqdiff.io import atomic_write

SPLITS = ("train", "valid", "test")
N_BYTE = ord("N")
_VALID = b"ACGTNRYSWKMBDHVacgtnryswkmbdhv"
# lower -> upper; ambiguity codes -> N
_NORMALISE = bytes.maketrans(_VALID, b"ACGTN" + b"N" * 10 + b"ACGTN" + b"N" * 10)
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Region:
    """Half-open interval [start, end) on `chrom`, 0-based (BED convention)."""

    chrom: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


class Genome:
    """Read-only access to a FASTA through its byte cache. `genome[chrom]` -> uint8 memmap[length]."""

    def __init__(
        self, fasta: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool = True
    ):
        self.fasta = Path(fasta)
        if not self.fasta.exists():
            raise FileNotFoundError(f"FASTA not found: {self.fasta}")
        self.cache_dir = Path(cache_dir) if cache_dir else self.fasta.parent / "cache"
        self.lengths: dict[str, int] = _ensure_cache(self.fasta, self.cache_dir, progress)
        self._files = {c: self.cache_dir / f"{_safe(c)}.u8" for c in self.lengths}
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, chrom: str) -> np.ndarray:
        if chrom not in self._arrays:  # opened lazily so each DataLoader worker maps its own view
            if chrom not in self.lengths:
                raise KeyError(f"chromosome {chrom!r} not in {self.fasta} (has {', '.join(self.lengths)})")
            n = self.lengths[chrom]
            self._arrays[chrom] = (
                np.memmap(self._files[chrom], np.uint8, "r", shape=(n,)) if n else np.zeros(0, np.uint8)
            )
        return self._arrays[chrom]

    def fetch(self, region: Region) -> np.ndarray:
        return self[region.chrom][region.start : region.end]

    def region_arrays(self, regions: list[Region]) -> list[np.ndarray]:
        """Raw uint8 sequences of `regions` (e.g. to fit a Markov baseline on exactly the training region)."""
        return [np.asarray(self.fetch(r)) for r in regions]

    def __getstate__(self) -> dict:  # never pickle mapped arrays into workers
        return {**self.__dict__, "_arrays": {}}

    def __repr__(self) -> str:
        return f"Genome({self.fasta}, {len(self.lengths)} sequences, {sum(self.lengths.values()):,} bp)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _safe(chrom: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", chrom)


def _ensure_cache(fasta: Path, cache_dir: Path, progress: bool) -> dict[str, int]:
    stat = fasta.stat()
    key = {
        "version": _CACHE_VERSION,
        "source": str(fasta.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    index = cache_dir / "index.json"
    if index.exists():
        meta = json.loads(index.read_text())
        if meta.get("key") == key and all((cache_dir / f"{_safe(c)}.u8").exists() for c in meta["lengths"]):
            return meta["lengths"]
    cache_dir.mkdir(parents=True, exist_ok=True)
    lengths = _build_cache(fasta, cache_dir, progress)
    # index written last: a crash mid-build leaves no valid-looking cache. Per-process temporary names
    # (atomic_write), so processes sharing a cache directory never write or delete each other's files.
    with atomic_write(index) as f:
        f.write(json.dumps({"key": key, "lengths": lengths}, indent=1))
    return lengths


def validate_fasta(fasta: str | os.PathLike) -> dict[str, int]:
    """Check a FASTA exactly as the genome cache does (errors name file:line) without keeping a cache; returns
    {name: length}. For FASTA read another way (pyfaidx, evaluation). Reliability, issue 8."""
    fasta = Path(fasta)
    if not fasta.exists():
        raise FileNotFoundError(f"FASTA not found: {fasta}")
    with tempfile.TemporaryDirectory(prefix="seqdiff-validate-") as d:
        return _build_cache(fasta, Path(d), progress=False)


def _numbered_lines(f, fasta: Path):
    """(line number, bytes) of `f`; a truncated or corrupt gzip becomes a ValueError naming the file and line
    (reliability, issue 8: otherwise an EOFError/zlib traceback)."""
    lineno = 0
    try:
        for lineno, raw in enumerate(f, 1):
            yield lineno, raw
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{fasta}:{lineno + 1}: truncated or corrupt gzip file ({e})") from None


def _build_cache(fasta: Path, cache_dir: Path, progress: bool) -> dict[str, int]:
    temps: list[Path] = []
    try:
        return _build_cache_files(fasta, cache_dir, progress, temps)
    except BaseException:  # reliability (issue 8): leave no partial per-record temp file behind, but only
        for tmp in temps:  # this process's own (issue 15: several nodes may build into one shared directory)
            tmp.unlink(missing_ok=True)
        raise


def _build_cache_files(fasta: Path, cache_dir: Path, progress: bool, temps: list[Path]) -> dict[str, int]:
    lengths: dict[str, int] = {}
    opener = gzip.open if fasta.suffix == ".gz" else open
    out, chrom, header_line = None, None, 0

    def close_record() -> None:
        if out is None:
            return
        out.close()
        if lengths[chrom] == 0:
            raise ValueError(f"{fasta}:{header_line}: header >{chrom} has no sequence")
        os.chmod(temps[-1], 0o666 & ~_umask())  # mkstemp makes 0600 files; the cache may be shared
        os.replace(temps[-1], cache_dir / f"{_safe(chrom)}.u8")

    with (
        opener(fasta, "rb") as f,
        tqdm(
            total=fasta.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"caching {fasta.name}",
            disable=not progress,
        ) as bar,
    ):
        for lineno, raw in _numbered_lines(f, fasta):
            bar.update(len(raw))
            line = raw.rstrip(b"\r\n")
            if line.startswith(b">"):
                close_record()
                fields = line[1:].split()
                if not fields:
                    raise ValueError(f"{fasta}:{lineno}: header without a name")
                chrom, header_line = fields[0].decode(), lineno
                if chrom in lengths:
                    raise ValueError(f"{fasta}:{lineno}: duplicate sequence name {chrom!r}")
                lengths[chrom] = 0
                fd, tmp = tempfile.mkstemp(prefix=f".{_safe(chrom)}.u8.", suffix=".tmp", dir=cache_dir)
                temps.append(Path(tmp))
                out = os.fdopen(fd, "wb")
                continue
            line = line.strip()
            if not line:
                continue
            if out is None:
                raise ValueError(
                    f"{fasta}:{lineno}: sequence before the first '>' header (not a FASTA file?)"
                )
            bad = line.translate(None, _VALID)
            if bad:
                col = next(i for i, b in enumerate(line) if b not in _VALID) + 1
                raise ValueError(
                    f"{fasta}:{lineno}: invalid character {chr(bad[0])!r} at column {col} "
                    "(expected A C G T or an IUPAC code)"
                )
            out.write(line.translate(_NORMALISE))
            lengths[chrom] += len(line)
    close_record()
    if not lengths:
        raise ValueError(f"{fasta}: empty FASTA (no '>' records)")
    return lengths


# ---------------------------------------------------------------- splits


def fraction_splits(
    lengths: dict[str, int], valid_frac: float = 0.05, test_frac: float = 0.05, gap: int = 100_000
) -> dict[str, list[Region]]:
    """Per chromosome: train | gap | valid | gap | test, disjoint; the gaps keep nearby sequence out of eval."""
    if not (0 <= valid_frac < 1 and 0 <= test_frac < 1 and valid_frac + test_frac < 1 and gap >= 0):
        raise ValueError(f"bad split fractions valid_frac={valid_frac} test_frac={test_frac} gap={gap}")
    splits: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for chrom, n in lengths.items():
        n_valid, n_test = int(n * valid_frac), int(n * test_frac)
        n_train = n - n_valid - n_test - 2 * gap
        if n_train <= 0:
            raise ValueError(
                f"chromosome {chrom!r} ({n:,} bp) is too short for valid_frac={valid_frac}, "
                f"test_frac={test_frac} and gap={gap:,}; lower the gap"
            )
        v0 = n_train + gap
        splits["train"].append(Region(chrom, 0, n_train))
        if n_valid:
            splits["valid"].append(Region(chrom, v0, v0 + n_valid))
        if n_test:
            splits["test"].append(Region(chrom, n - n_test, n))
    return splits


def bed_splits(path: str | os.PathLike, lengths: dict[str, int]) -> dict[str, list[Region]]:
    """Regions from a BED with a split column (`chrom start end split`, Basenji/Enformer style), validated."""
    splits: dict[str, list[Region]] = {s: [] for s in SPLITS}
    aliases = {"validation": "valid", "val": "valid"}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.split()
            where = f"{path}:{lineno}"
            if len(cols) < 4:
                raise ValueError(f"{where}: expected 4 columns (chrom start end split), got {len(cols)}")
            chrom, split = cols[0], aliases.get(cols[3], cols[3])
            try:
                start, end = int(cols[1]), int(cols[2])
            except ValueError:
                raise ValueError(f"{where}: start/end are not integers: {cols[1]!r} {cols[2]!r}") from None
            if chrom not in lengths:
                raise ValueError(f"{where}: unknown chromosome {chrom!r}")
            if not 0 <= start < end:
                raise ValueError(f"{where}: need 0 <= start < end, got start={start} end={end}")
            if end > lengths[chrom]:
                raise ValueError(f"{where}: end {end} is beyond the end of {chrom} ({lengths[chrom]})")
            if split not in splits:
                raise ValueError(f"{where}: unknown split {cols[3]!r} (expected train, valid or test)")
            splits[split].append(Region(chrom, start, end))
    return splits

"""Windowed datasets over a Genome: random training windows, tiled evaluation windows, any-FASTA windows.

Every item is `{"x0": LongTensor[L]}` with L = window_bases // tokenizer.bases_per_token.
Training positions are a pure function of (seed, epoch, index), so runs are reproducible and resumable
without dataset state: `EpochSampler` (its `set_epoch` is called by Lightning) encodes the epoch into the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from seqdiff.dna.genome import N_BYTE, Genome, Region, validate_fasta
from seqdiff.io import write_npz

_MAX_TRIES = 32  # rejection-sampling attempts before falling back to a known-good tile


def _usable(regions: list[Region], window: int, what: str) -> list[Region]:
    if not regions:
        raise ValueError(f"{what}: no regions in this split")
    kept = [r for r in regions if len(r) >= window]
    if not kept:
        raise ValueError(
            f"{what}: window of {window:,} bp is longer than every region "
            f"(longest {max(len(r) for r in regions):,} bp); use a smaller window"
        )
    return kept


def _good_tiles(
    genome: Genome, regions: list[Region], window: int, max_n_frac: float
) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping tiles (stride = window) with at most `max_n_frac` N: (region index[T], start[T]).

    Cached beside the genome's byte cache (keyed by the FASTA's identity, the regions, window and max_n_frac),
    so the scan over a whole split runs once (in the datamodule's prepare_data) instead of on every DDP rank."""
    st = genome.fasta.stat()
    key = json.dumps([str(genome.fasta.resolve()), st.st_size, st.st_mtime_ns, window, max_n_frac,
                      [(r.chrom, r.start, r.end) for r in regions]])
    path = genome.cache_dir / f"tiles-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    try:
        with np.load(path) as z:
            return z["region"], z["start"]
    except (OSError, ValueError, KeyError):  # absent (or unreadable): compute and store
        pass
    ridx, starts = _scan_tiles(genome, regions, window, max_n_frac)
    try:
        write_npz(path, region=ridx, start=starts)
    except OSError:  # a read-only cache directory: the index is simply recomputed next time
        pass
    return ridx, starts


def _scan_tiles(
    genome: Genome, regions: list[Region], window: int, max_n_frac: float
) -> tuple[np.ndarray, np.ndarray]:
    idx, starts = [], []
    for i, r in enumerate(regions):
        n = len(r) // window
        if n == 0:
            continue
        tiles = np.asarray(genome.fetch(Region(r.chrom, r.start, r.start + n * window))).reshape(n, window)
        ok = np.flatnonzero((tiles == N_BYTE).mean(axis=1) <= max_n_frac)
        idx.append(np.full(ok.size, i))
        starts.append(r.start + ok * window)
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(idx).astype(np.int64), np.concatenate(starts).astype(np.int64)


def _to_tokens(tokenizer, seq: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(tokenizer.encode_bytes(np.asarray(seq)))


class EpochSampler(Sampler[int]):
    """Yields `epoch * n + i` for i in range(n); the dataset splits it back into (epoch, i).

    Exact resume: `epoch` and `skip` start a resumed run where the checkpoint left off: in
    that epoch the indices are shifted by `skip` (the number already consumed over all ranks), so the
    DistributedSampler that Lightning wraps around this one hands every rank exactly the windows it would have
    read next. The length stays n; Lightning stops the epoch after the remaining n - skip (its restored batch
    counter), so the shifted tail is never read.
    """

    def __init__(self, n: int, epoch: int = 0, skip: int = 0) -> None:
        self.n, self.epoch = n, epoch
        self.resume_epoch, self.skip = epoch, skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        start = self.epoch * self.n + (self.skip if self.epoch == self.resume_epoch else 0)
        return iter(range(start, start + self.n))

    def __len__(self) -> int:
        return self.n


class TrainWindows(Dataset):
    """`windows_per_epoch` random windows, uniform over all valid start positions of `regions`.

    Windows with more than `max_n_frac` N are resampled (then replaced by a random good tile), so no batch
    is mostly N. With `rc_augment`, half the windows (chosen by the same RNG) are reverse-complemented.
    """

    def __init__(
        self,
        genome: Genome,
        regions: list[Region],
        window: int,
        tokenizer,
        windows_per_epoch: int,
        max_n_frac: float = 0.5,
        seed: int = 0,
        rc_augment: bool = False,
        teacher=None,
    ) -> None:
        self.genome, self.window, self.tokenizer = genome, window, tokenizer
        self.teacher = teacher  # CountTeacher: items also carry "q" (L, 5), the teacher's soft targets
        self.regions = _usable(regions, window, "train split")
        self.n, self.max_n_frac, self.seed, self.rc_augment = windows_per_epoch, max_n_frac, seed, rc_augment
        self.cum = np.cumsum([len(r) - window + 1 for r in self.regions])
        self.tile_region, self.tile_start = _good_tiles(genome, self.regions, window, max_n_frac)
        if self.tile_start.size == 0:
            raise ValueError(f"{genome.fasta}: train split: no {window:,} bp window has at most {max_n_frac:.0%} N")

    def __len__(self) -> int:
        return self.n

    def position(self, index: int) -> tuple[Region, bool]:
        """The window (and whether it is reverse-complemented) for a global index epoch * n + i."""
        epoch, i = divmod(index, self.n)
        rng = np.random.default_rng([self.seed, epoch, i])
        for _ in range(_MAX_TRIES):
            u = int(rng.integers(self.cum[-1]))
            r = int(np.searchsorted(self.cum, u, side="right"))
            start = self.regions[r].start + u - (int(self.cum[r - 1]) if r else 0)
            region = Region(self.regions[r].chrom, start, start + self.window)
            if (self.genome.fetch(region) == N_BYTE).mean() <= self.max_n_frac:
                break
        else:
            t = int(rng.integers(self.tile_start.size))
            start = int(self.tile_start[t])
            region = Region(self.regions[self.tile_region[t]].chrom, start, start + self.window)
        return region, bool(self.rc_augment and rng.random() < 0.5)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        region, rc = self.position(index)
        x0 = _to_tokens(self.tokenizer, self.genome.fetch(region))
        item = {"x0": self.tokenizer.reverse_complement(x0) if rc else x0}
        if self.teacher is not None:
            item["q"] = self._soft_targets(region, rc)
        return item

    def _soft_targets(self, region: Region, rc: bool) -> torch.Tensor:
        """The teacher's q(x_l | k bases each side) for the window, read with k bases of genome margin
        (N beyond a chromosome end)."""
        k, chrom = self.teacher.k, region.chrom
        lo, hi, size = region.start - k, region.end + k, self.genome.lengths[chrom]
        seq = self.tokenizer.encode_bytes(np.asarray(self.genome.fetch(Region(chrom, max(lo, 0), min(hi, size)))))
        seq = np.concatenate([np.full(max(-lo, 0), 4), seq, np.full(max(hi - size, 0), 4)])
        q = self.teacher(np.minimum(seq, 4))  # (L, 5); token ids A C G T N = base codes 0..4
        if rc:
            q = q[::-1][:, [3, 2, 1, 0, 4]]
        return torch.from_numpy(np.ascontiguousarray(q))


class EvalWindows(Dataset):
    """Deterministic tiling of `regions` with stride = window, mostly-N tiles skipped, at most
    `max_windows` tiles kept, spread evenly across the split (None keeps all)."""

    def __init__(
        self,
        genome: Genome,
        regions: list[Region],
        window: int,
        tokenizer,
        max_n_frac: float = 0.5,
        max_windows: int | None = None,
        name: str = "eval",
    ) -> None:
        self.genome, self.window, self.tokenizer = genome, window, tokenizer
        self.regions, self.windows = [], []
        if not regions:  # e.g. valid_frac=0: an empty split, not an error
            warnings.warn(f"{name} split is empty", stacklevel=2)
            return
        self.regions = _usable(regions, window, f"{name} split")
        ridx, starts = _good_tiles(genome, self.regions, window, max_n_frac)
        if max_windows is not None and starts.size > max_windows:
            keep = np.unique(np.linspace(0, starts.size - 1, max_windows).round().astype(np.int64))
            ridx, starts = ridx[keep], starts[keep]
        if starts.size == 0:
            warnings.warn(
                f"{name} split: every {window:,} bp tile has more than {max_n_frac:.0%} N", stacklevel=2
            )
        self.windows = [
            Region(self.regions[i].chrom, int(s), int(s) + window) for i, s in zip(ridx, starts, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x0": _to_tokens(self.tokenizer, self.genome.fetch(self.windows[index]))}


class FastaWindows(Dataset):
    """Every record of any FASTA tiled with stride = window; a record's last tile may be shorter and is returned
    at its own length, not padded (a bidirectional model would attend to padding; evaluation batches windows of
    equal length, see `token_lengths`). Tiles with more than `max_n_frac` N are skipped. Read through pyfaidx."""

    def __init__(self, path: str | os.PathLike, tokenizer, window: int, max_n_frac: float = 0.5) -> None:
        import pyfaidx

        self.path, self.tokenizer, self.window = Path(path), tokenizer, window
        if window % tokenizer.bases_per_token:
            raise ValueError(
                f"window {window} is not a multiple of bases_per_token={tokenizer.bases_per_token}"
            )
        self.windows: list[Region] = []
        with pyfaidx.Fasta(str(self.path), sequence_always_upper=True) as fa:
            for name in fa.keys():
                seq = np.frombuffer(str(fa[name][:]).encode(), dtype=np.uint8)
                for s in range(0, len(seq), window):
                    if (seq[s : s + window] == N_BYTE).mean() <= max_n_frac:
                        self.windows.append(Region(name, s, min(s + window, len(seq))))
        if not self.windows:
            raise ValueError(f"{self.path}: no window with at most {max_n_frac:.0%} N")
        self._fa = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import pyfaidx

        if self._fa is None:  # opened per worker process
            self._fa = pyfaidx.Fasta(str(self.path), sequence_always_upper=True)
        r = self.windows[index]
        seq = np.frombuffer(str(self._fa[r.chrom][r.start : r.end]).encode(), dtype=np.uint8)
        try:
            ids = self.tokenizer.encode_bytes(seq)
        except ValueError as e:
            raise ValueError(f"{self.path}: {r.chrom}:{r.start}-{r.end}: {e}") from None
        return {"x0": torch.from_numpy(ids)}  # (ceil(bases / k),): a short tail k-mer is one token

    def token_lengths(self) -> list[int]:
        """Tokens of each window (window // k, or fewer for a record's last tile), without reading it."""
        k = self.tokenizer.bases_per_token
        return [-(-len(r) // k) for r in self.windows]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fa": None}


def fasta_windows(path: str | os.PathLike, tokenizer, window: int, max_n_frac: float = 0.5) -> FastaWindows:
    """Window an arbitrary FASTA for evaluation (`scripts/evaluate.py fasta=ANY.fa`); window in bases."""
    validate_fasta(path)  # bad bytes / no header -> ValueError naming file:line, before any window is read
    return FastaWindows(path, tokenizer, window, max_n_frac)

"""`GenomeDataModule`: `hydra.utils.instantiate(cfg.data, tokenizer=tok)` -> batches `{"x0": LongTensor[B, L]}`."""

from __future__ import annotations

import os

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from seqdiff.dna.fetch import genome_files
from seqdiff.dna.genome import SPLITS, Genome, Region, bed_splits, fraction_splits
from seqdiff.dna.windows import EpochSampler, EvalWindows, TrainWindows, _good_tiles


class GenomeDataModule(L.LightningDataModule):
    """Windows of a catalogued genome (or of `fasta`, with `bed` splits or fraction splits).

    `window` is in bases; `.window` is tokens per example (window // tokenizer.bases_per_token), and each
    example covers `.window_bases` = `.window * bases_per_token` bases (whole k-mers, so RC augmentation is exact).
    Splits: a BED with a split column (`bed`, or the catalogue's) or, without one, per chromosome
    train | gap | valid | gap | test with `valid_frac`, `test_frac`, `gap` (bp).
    """

    def __init__(
        self,
        tokenizer,
        genome: str | None = "grch37_chr20",
        root: str | os.PathLike = "genomes",
        fasta: str | os.PathLike | None = None,
        bed: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        window: int = 512,
        batch_size: int = 16,
        num_workers: int = 0,
        valid_frac: float = 0.05,
        test_frac: float = 0.05,
        gap: int = 100_000,
        rc_augment: bool = True,
        max_n_frac: float = 0.5,
        train_windows_per_epoch: int = 50_000,
        max_eval_windows: int | None = 1024,
        seed: int = 0,
        teacher: dict | None = None,
    ) -> None:
        super().__init__()
        if window < tokenizer.bases_per_token:
            raise ValueError(f"window {window} bp is shorter than one token ({tokenizer.bases_per_token} bp)")
        if genome is None and fasta is None:
            raise ValueError("give a catalogued `genome` name or a `fasta` path")
        self.tokenizer = tokenizer
        self.window = window // tokenizer.bases_per_token  # tokens per example
        self.window_bases = (
            self.window * tokenizer.bases_per_token
        )  # whole k-mers only (512 bp, k=3 -> 510 bp)
        self.genome_name, self.root, self.fasta, self.bed, self.cache_dir = (
            genome,
            root,
            fasta,
            bed,
            cache_dir,
        )
        self.batch_size, self.num_workers = batch_size, num_workers
        self.valid_frac, self.test_frac, self.gap = valid_frac, test_frac, gap
        self.rc_augment, self.max_n_frac, self.seed = rc_augment, max_n_frac, seed
        self.train_windows_per_epoch, self.max_eval_windows = train_windows_per_epoch, max_eval_windows
        self.teacher_cfg = teacher  # CountTeacher kwargs: training items carry its soft targets "q"
        if teacher is not None and tokenizer.bases_per_token != 1:
            raise ValueError("data.teacher needs a character-level tokenizer (one token per base)")
        self.genome: Genome | None = None
        self.splits: dict[str, list[Region]] = {}
        self.datasets: dict = {}
        # prepare_data runs once per job (global rank 0), not once per node: on shared storage, local rank 0 of
        # every node would otherwise build the same cache files at once. A node without the cache
        # (no shared storage) still builds its own in setup().
        self.prepare_data_per_node = False

    # ------------------------------------------------------------ genome and splits

    def load(self) -> None:
        """Open the genome (building its byte cache once) and compute the splits; idempotent."""
        if self.genome is not None:
            return
        fasta, bed = self.fasta, self.bed
        if fasta is None:
            files = genome_files(self.genome_name, self.root)
            fasta, bed = files.fasta, bed or files.bed
        self.genome = Genome(fasta, self.cache_dir)
        if bed is not None:
            self.splits = bed_splits(bed, self.genome.lengths)
        else:
            self.splits = fraction_splits(self.genome.lengths, self.valid_frac, self.test_frac, self.gap)

    def split_arrays(self, split: str) -> list[np.ndarray]:
        """Raw upper-case uint8 sequences of a split's regions (e.g. to fit a Markov baseline on train)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.load()
        return self.genome.region_arrays(self.splits[split])

    def split_codes(self, split: str) -> list[np.ndarray]:
        """A split's regions as base codes uint8 0..4 (A C G T N): what count models (Markov chain, count
        teacher, the denoiser's n-gram prior) are fitted on."""
        from seqdiff.dna.tokenizer import base_codes

        return [base_codes(a) for a in self.split_arrays(split)]

    def prepare_data(self) -> None:
        # Lightning runs this on global rank 0 while the other ranks wait (prepare_data_per_node=False), before
        # setup() on every rank: the byte cache and each split's good-tile index are built once, and every rank
        # then reads them instead of rescanning its split.
        self.load()
        w = self.window_bases
        for split in SPLITS:
            regions = [r for r in self.splits[split] if len(r) >= w]
            if regions:
                _good_tiles(self.genome, regions, w, self.max_n_frac)

    def setup(self, stage: str | None = None) -> None:
        self.load()
        w = self.window_bases
        if stage in (None, "fit") and "train" not in self.datasets:
            self.datasets["train"] = TrainWindows(
                self.genome,
                self.splits["train"],
                w,
                self.tokenizer,
                self.train_windows_per_epoch,
                self.max_n_frac,
                self.seed,
                self.rc_augment,
                teacher=self._teacher(),
            )
        for split, stages in (("valid", (None, "fit", "validate")), ("test", (None, "test"))):
            if stage in stages and split not in self.datasets:
                self.datasets[split] = EvalWindows(
                    self.genome,
                    self.splits[split],
                    w,
                    self.tokenizer,
                    self.max_n_frac,
                    self.max_eval_windows,
                    split,
                )

    def _teacher(self):
        if self.teacher_cfg is None:
            return None
        from seqdiff.dna.teacher import CountTeacher

        return CountTeacher(**self.teacher_cfg).fit(self.split_codes("train"))

    # ------------------------------------------------------------ loaders

    def _loader(self, split: str, **kw) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "valid": "validate", "test": "test"}[split])
        # Pinned host memory lets the host-to-GPU copy of each batch run asynchronously.
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=on_cuda,
            **kw,
        )

    def train_dataloader(self) -> DataLoader:
        # Lightning calls sampler.set_epoch(epoch) at each epoch start: new, reproducible windows per epoch.
        # Exact resume: Lightning restores its loop counters before it asks for this loader, so
        # start at the restored epoch, after the batches every rank already trained on.
        epoch = skip = 0
        if self.trainer is not None:
            epoch = self.trainer.current_epoch
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
            skip = done * self.batch_size * self.trainer.world_size
        sampler = EpochSampler(self.train_windows_per_epoch, epoch=epoch, skip=skip)
        return self._loader("train", sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

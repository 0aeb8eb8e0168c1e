"""Genome data: fetching, FASTA access with a byte cache, splits, windowed datasets, the LightningDataModule."""

from seqdiff.data.fetch import GenomeNotFoundError, fetch_genome, genome_dir, genome_files
from seqdiff.data.genome import Genome, Region, bed_splits, fraction_splits
from seqdiff.data.windows import EvalWindows, TrainWindows, fasta_windows

__all__ = [
    "Genome",
    "Region",
    "bed_splits",
    "fraction_splits",
    "fetch_genome",
    "genome_dir",
    "genome_files",
    "GenomeNotFoundError",
    "TrainWindows",
    "EvalWindows",
    "fasta_windows",
    "GenomeDataModule",
]


def __getattr__(name: str):  # Lightning is imported only when the datamodule is asked for
    if name == "GenomeDataModule":
        from seqdiff.data.datamodule import GenomeDataModule

        return GenomeDataModule
    raise AttributeError(name)

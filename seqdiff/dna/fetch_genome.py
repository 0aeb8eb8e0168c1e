"""`fetch_genome(cfg)` (scripts/fetch_genome.py, configs/fetch_genome.yaml): fetch a catalogued genome.

    python scripts/fetch_genome.py grch37_chr20          # = name=grch37_chr20; prints the FASTA path
    python scripts/fetch_genome.py list=true             # the catalogue
    python scripts/fetch_genome.py hg38 root=/data/genomes force=true verify=true
"""

from __future__ import annotations

from omegaconf import DictConfig

from seqdiff.dna import fetch


def fetch_genome(cfg: DictConfig) -> str | None:
    """Print (and return) the path of the fetched FASTA; with list=true or no name, print the catalogue."""
    if cfg.list or not cfg.name:
        for name, entry in fetch.load_catalogue(cfg.catalogue).items():
            print(f"{name:14s} {entry['description']}")
        return None
    try:
        files = fetch.fetch_genome(cfg.name, cfg.root, cfg.catalogue, force=cfg.force, verify=cfg.verify)
    except fetch.FetchError as e:  # a failed download or checksum: one `error:` line, like any bad input
        raise ValueError(str(e)) from None
    print(files.fasta)
    return str(files.fasta)

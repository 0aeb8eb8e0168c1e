"""Fetch a catalogued genome: `python scripts/fetch_genome.py NAME [root=genomes] [force=true]` (list=true)."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.dna.fetch_genome import fetch_genome


@hydra.main(config_path="../configs", config_name="fetch_genome", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(fetch_genome, cfg)


if __name__ == "__main__":
    run_hydra(main, positional='name')

"""Constrained design: `python scripts/design.py checkpoint=PATH template=STRING num_samples=N out=designs.fasta`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.dna.design import design


@hydra.main(config_path="../configs", config_name="design", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(design, cfg)


if __name__ == "__main__":
    run_hydra(main)

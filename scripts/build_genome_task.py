"""Build a genome-annotation task: `python scripts/build_genome_task.py [task=yeast_coding] [out=DIR] [window=200]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.dna.downstream.build_genome_task import build_genome_task


@hydra.main(config_path="../configs", config_name="build_genome_task", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(build_genome_task, cfg)


if __name__ == "__main__":
    run_hydra(main)

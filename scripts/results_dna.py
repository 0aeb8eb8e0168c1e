"""README DNA results: `python scripts/results_dna.py runs=[outputs/demo,outputs/chr20_long]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.dna.results_dna import results_dna


@hydra.main(config_path="../configs", config_name="results_dna", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(results_dna, cfg)


if __name__ == "__main__":
    run_hydra(main)

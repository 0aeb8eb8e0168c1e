"""Diffusion families compared, one command: `python scripts/compare_families.py` (configs/compare_families.yaml)."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.compare_families import compare_families
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="compare_families", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(compare_families, cfg)


if __name__ == "__main__":
    run_hydra(main)

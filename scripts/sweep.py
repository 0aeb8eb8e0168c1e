"""Training recipes at a fixed wall-clock budget: `python scripts/sweep.py [sweep=NAME] [budget_seconds=480]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.sweep import sweep
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(sweep, cfg)


if __name__ == "__main__":
    run_hydra(main)

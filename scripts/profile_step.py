"""Profile one training step of the model train.py would build: `python scripts/profile_step.py [overrides=[...]]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.profile_step import profile_step
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="profile_step", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(profile_step, cfg)


if __name__ == "__main__":
    run_hydra(main)

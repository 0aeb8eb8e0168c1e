"""Sample from a trained model: `python scripts/sample.py checkpoint=PATH num_samples=N length=L out=FILE.fasta`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.sample import sample


@hydra.main(config_path="../configs", config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(sample, cfg)


if __name__ == "__main__":
    run_hydra(main)

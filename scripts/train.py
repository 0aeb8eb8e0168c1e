"""Train a model: `python scripts/train.py [data=hg38] [model=...] [experiment=...]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.train import train


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)


if __name__ == "__main__":
    run_hydra(main)

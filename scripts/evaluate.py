"""Held-out bits/base: `python scripts/evaluate.py checkpoint=PATH split=test` or `... fasta=ANY.fa`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.evaluate import evaluate


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    run_hydra(main)

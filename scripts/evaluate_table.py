"""Evaluate a table model: `python scripts/evaluate_table.py checkpoint=PATH out=benchmarks/adult.json`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.tables.evaluate_table import evaluate_table


@hydra.main(config_path="../configs", config_name="evaluate_table", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate_table, cfg)


if __name__ == "__main__":
    run_hydra(main)

"""Fit CTGAN and TVAE on a table model's training split: `python scripts/table_peers.py checkpoint=PATH out_dir=DIR`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.tables.table_peers import table_peers


@hydra.main(config_path="../configs", config_name="table_peers", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(table_peers, cfg)


if __name__ == "__main__":
    run_hydra(main)

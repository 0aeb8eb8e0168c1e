"""Table rows: `python scripts/tables.py sample checkpoint=PATH num_rows=N out=FILE.csv` (or `impute input=...`)."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.tables.tables import tables


@hydra.main(config_path="../configs", config_name="tables", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(tables, cfg)


if __name__ == "__main__":
    run_hydra(main, positional='command')

"""Export a checkpoint as a shareable folder: `python scripts/export.py checkpoint=PATH out=DIR`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.export import export


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(export, cfg)


if __name__ == "__main__":
    run_hydra(main)

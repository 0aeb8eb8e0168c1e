"""Fill in lines of a Python file: `python scripts/infill.py checkpoint=PATH file=PATH lines=A-B`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.code.infill import infill


@hydra.main(config_path="../configs", config_name="infill", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(infill, cfg)


if __name__ == "__main__":
    run_hydra(main)

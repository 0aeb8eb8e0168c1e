"""Fine-tune a denoiser on a labelled-DNA task: `python scripts/finetune.py task=splice checkpoint=PATH`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.dna.downstream.finetune import finetune


@hydra.main(config_path="../configs", config_name="finetune", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(finetune, cfg)


if __name__ == "__main__":
    run_hydra(main)

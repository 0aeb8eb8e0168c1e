"""Pretrained vs scratch vs k-mer LR vs CNN: `python scripts/benchmark_downstream.py task=splice checkpoint=PATH`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli
from seqdiff.dna.downstream.finetune import benchmark


@hydra.main(config_path="../configs", config_name="benchmark_downstream", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark, cfg)


if __name__ == "__main__":
    main()

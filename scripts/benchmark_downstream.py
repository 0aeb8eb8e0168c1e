"""Pretrained vs scratch vs k-mer LR vs CNN: `python scripts/benchmark_downstream.py task=splice checkpoint=PATH`."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark_downstream import benchmark_downstream
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark_downstream", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_downstream, cfg)


if __name__ == "__main__":
    run_hydra(main)

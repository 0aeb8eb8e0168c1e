"""Constrained design benchmark: `python scripts/benchmark_design.py checkpoint=PATH [num_samples=64 length=1000]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark_design import benchmark_design
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark_design", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_design, cfg)


if __name__ == "__main__":
    run_hydra(main)

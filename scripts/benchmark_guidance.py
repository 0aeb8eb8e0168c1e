"""Guided design on splice junctions: `python scripts/benchmark_guidance.py` (configs/benchmark_guidance.yaml)."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark_guidance import benchmark_guidance
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark_guidance", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_guidance, cfg)


if __name__ == "__main__":
    run_hydra(main)

"""Remasking samplers vs ancestral at equal network calls: `python scripts/benchmark_remasking.py`
(configs/benchmark_remasking.yaml; exact Markov-oracle denoiser by default, or checkpoint=PATH)."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark_remasking import benchmark_remasking
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark_remasking", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_remasking, cfg)


if __name__ == "__main__":
    run_hydra(main)

"""MDLM vs AR vs Markov: `python scripts/benchmark.py [benchmark=full]` -> benchmarks/RESULTS.md."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark import benchmark
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark, cfg)


if __name__ == "__main__":
    run_hydra(main)

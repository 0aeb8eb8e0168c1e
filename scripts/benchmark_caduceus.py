"""Caduceus backbones on CPU: `python scripts/benchmark_caduceus.py [parts=[scan,models,train]]`."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.benchmark_caduceus import benchmark_caduceus
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="benchmark_caduceus", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_caduceus, cfg)


if __name__ == "__main__":
    run_hydra(main)

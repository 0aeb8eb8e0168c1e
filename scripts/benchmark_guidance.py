"""Guided design on splice junctions: `python scripts/benchmark_guidance.py` (configs/benchmark_guidance.yaml)."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.evaluation.guidance_benchmark import benchmark_guidance


@hydra.main(config_path="../configs", config_name="benchmark_guidance", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark_guidance, cfg)


if __name__ == "__main__":
    run_hydra(main)

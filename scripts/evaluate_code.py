"""Evaluate code infilling: `python scripts/evaluate_code.py diffusion=CKPT autoregressive=CKPT out=PREFIX`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.code.evaluate_code import evaluate_code


@hydra.main(config_path="../configs", config_name="evaluate_code", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate_code, cfg)


if __name__ == "__main__":
    run_hydra(main)

"""Where one model beats another, window by window: `python scripts/window_gap.py 'checkpoints=[A,B]'`
(configs/window_gap.yaml)."""

import hydra
from omegaconf import DictConfig

from seqdiff.benchmarks.window_gap import window_gap
from seqdiff.cli import run_cli, run_hydra


@hydra.main(config_path="../configs", config_name="window_gap", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(window_gap, cfg)


if __name__ == "__main__":
    run_hydra(main)

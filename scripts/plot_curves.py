"""Plot a run's learning curves from its CSV, TensorBoard or W&B logs: `python scripts/plot_curves.py run=DIR`."""

import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from seqdiff.evaluation.plot_curves import plot_curves


@hydra.main(config_path="../configs", config_name="plot_curves", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(plot_curves, cfg)


if __name__ == "__main__":
    run_hydra(main)

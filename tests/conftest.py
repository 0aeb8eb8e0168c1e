"""Shared fixtures: the repo paths, composed configs, and one tiny model trained on real DNA (session scope)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
CHR20 = FIXTURES / "chr20_300kb.fa"  # real GRCh37 chr20:35.0-35.3 Mb, see fixtures/PROVENANCE.md

# A tiny model on the real chr20 fixture: train | 1 kb gap | valid | 1 kb gap | test.
TINY_OVERRIDES = [
    "data.genome=null", f"data.fasta={CHR20}", "data.gap=1000", "data.window=128", "data.batch_size=8",
    "data.max_eval_windows=16", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_cond=32",
    "trainer.max_steps=13", "trainer.val_check_interval=6", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=6",
]


def compose(config_name: str = "train", overrides: list[str] | None = None, run_dir: Path | None = None):
    """Compose a config from configs/ as the CLI would (with run_dir set, since there is no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        extra = [f"run_dir={run_dir}"] if run_dir is not None else []
        return hydra_compose(config_name, overrides=(overrides or []) + extra)


def run_script(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path to last.ckpt of a tiny transformer trained for 12 steps on the real chr20 fixture."""
    from seqdiff.train import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(compose("train", TINY_OVERRIDES, run_dir=run_dir))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt

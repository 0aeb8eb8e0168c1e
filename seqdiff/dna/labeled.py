"""`LabeledDataModule`: labelled sequences (e.g. splice junctions) as LM batches `{"x0": (B, L), "y": (B,)}`,
for class-conditional denoisers (classifier-free guidance) and noisy classifiers (classifier guidance).

The sequences come from any object with `train_sequences`, `train_labels`, `test_sequences`, `test_labels` and
`classes` (a `seqdiff.dna.downstream.tasks.Task`, built by Hydra from `task:`). Validation is a stratified
`val_fraction` of the training set (fixed by `seed`), test is the task's own test split, so a judge trained on
the training split never sees what the generator was validated on either. Sequences are tokenized and padded
(pad id, excluded from every loss) to `window` tokens (default: the longest sequence).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, valid): `fraction` of each class (at least one when a class has two or more) to valid."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train, valid = [], []
    for c in np.unique(labels_arr):
        idx = rng.permutation(np.flatnonzero(labels_arr == c))
        k = int(round(fraction * len(idx)))
        k = max(k, 1) if fraction > 0 and len(idx) > 1 else k
        valid += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(valid)


class _Tensors(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x0": self.x[i], "y": self.y[i]}


class LabeledDataModule(L.LightningDataModule):
    def __init__(self, tokenizer: Any, task: Any, window: int | None = None, val_fraction: float = 0.1,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.tokenizer, self.task = tokenizer, task
        self.classes = list(task.classes)
        self.val_fraction, self.batch_size, self.num_workers, self.seed = val_fraction, batch_size, num_workers, seed
        bpt = getattr(tokenizer, "bases_per_token", 1)
        longest = max(len(s) for s in task.train_sequences + task.test_sequences)
        self.window = int(window) if window is not None else -(-longest // bpt)
        self.datasets: dict[str, _Tensors] = {}

    def encode(self, sequences: list[str], what: str) -> torch.Tensor:
        """(n, window) token ids, padded with pad_id; a sequence longer than the window is an error."""
        out = torch.full((len(sequences), self.window), self.tokenizer.pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            ids = self.tokenizer.encode(s)
            if len(ids) > self.window:
                raise ValueError(f"{what} sequence #{i} has {len(ids)} tokens, more than window={self.window}")
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def label_ids(self, labels: list[str]) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([index[y] for y in labels], dtype=torch.long)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        x = self.encode(list(self.task.train_sequences), "train")
        y = self.label_ids(list(self.task.train_labels))
        tr, va = stratified_split(y.tolist(), self.val_fraction, self.seed)
        self.datasets["train"] = _Tensors(x[tr], y[tr])
        self.datasets["valid"] = _Tensors(x[va], y[va])
        self.datasets["test"] = _Tensors(self.encode(list(self.task.test_sequences), "test"),
                                         self.label_ids(list(self.task.test_labels)))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        g = torch.Generator().manual_seed(self.seed)
        drop_last = shuffle and len(self.datasets[split]) >= self.batch_size
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, generator=g,
                          num_workers=self.num_workers, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

"""Classification metrics (torchmetrics), shared by the Lightning classifier and the scikit-learn baselines."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

METRICS = ("acc", "mcc", "f1", "auroc")


def classification_metrics(num_classes: int, prefix: str = "") -> MetricCollection:
    """acc (plain, micro), mcc (multiclass Matthews), f1 (macro), auroc (macro one-vs-rest) on probabilities."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "mcc": MulticlassMatthewsCorrCoef(num_classes),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "auroc": MulticlassAUROC(num_classes, average="macro"),
        },
        prefix=prefix,
    )


def score(probs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Metrics of probabilities [N, C] against integer targets [N]."""
    probs = torch.as_tensor(np.asarray(probs), dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    metrics = classification_metrics(probs.shape[1])
    return {k: float(v) for k, v in metrics(probs, targets).items()}

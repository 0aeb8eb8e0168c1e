"""k-mer count features (k = 1..k_max) + logistic regression (scikit-learn): the alignment-free baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, Normalizer

from seqdiff.dna.tokenizer import normalize


def kmer_pipeline(k_max: int, C: float, seed: int) -> Pipeline:
    """Counts of every k-mer seen in train for k = 1..k_max -> per-sequence frequencies -> scaled -> LR.

    Frequencies (L1 per sequence) make sequences of different lengths comparable; MaxAbsScaler keeps the
    sparse matrix sparse while putting rare long k-mers on the scale of common short ones.
    """
    return Pipeline([
        ("counts", CountVectorizer(analyzer="char", ngram_range=(1, k_max), lowercase=False, dtype=np.float32)),
        ("freq", Normalizer(norm="l1")),
        ("scale", MaxAbsScaler()),
        ("lr", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
    ])


def fit_kmer_lr(
    train: tuple[Sequence[str], Sequence[int]], val: tuple[Sequence[str], Sequence[int]], k_max: int = 6,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), seed: int = 0,
) -> tuple[Pipeline, float, float]:
    """Fit one pipeline per C on train, keep the best by validation accuracy: (pipeline, C, val_acc)."""
    if not 1 <= k_max <= 8:
        raise ValueError(f"k_max must be in 1..8, got {k_max}")
    xtr, xva = [normalize(s) for s in train[0]], [normalize(s) for s in val[0]]
    best = None
    for C in Cs:
        pipe = kmer_pipeline(k_max, C, seed).fit(xtr, np.asarray(train[1]))
        acc = float((pipe.predict(xva) == np.asarray(val[1])).mean())
        if best is None or acc > best[2]:
            best = (pipe, float(C), acc)
    assert best is not None, "Cs is empty"
    return best


def predict_proba(pipe: Pipeline, sequences: Sequence[str], num_classes: int) -> np.ndarray:
    """Class probabilities [N, num_classes] (columns for classes absent from the fit are 0)."""
    probs = np.zeros((len(sequences), num_classes))
    probs[:, pipe.classes_] = pipe.predict_proba([normalize(s) for s in sequences])
    return probs

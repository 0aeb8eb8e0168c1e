"""Synthetic-table metrics (SDMetrics-style definitions, computed with numpy / scikit-learn) and imputation.

Frames are typed as `seqdiff.tables.data.read_table` returns them: numeric columns float (NaN missing),
categorical columns object str (None missing); `kinds` maps column -> categorical | numeric | integer.
Every score is in [0, 1] with 1 = indistinguishable from the reference, except detection AUC (0.5 = best),
ML efficacy (the task's own scores) and distances.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import KNNImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MISSING = "<missing>"


def _cat(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), MISSING).astype(str)


def _is_cat(kinds: Mapping[str, str], c: str) -> bool:
    return kinds[c] == "categorical"


# ---- fidelity ---------------------------------------------------------------------------------------------
def column_shapes(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str]) -> dict[str, float]:
    """Per column: 1 - KS statistic (numeric, non-missing values) or 1 - total variation (categorical,
    missing as its own category)."""
    out = {}
    for c in kinds:
        if _is_cat(kinds, c):
            p, q = _cat(real[c]).value_counts(normalize=True), _cat(synth[c]).value_counts(normalize=True)
            out[c] = 1.0 - 0.5 * float(p.sub(q, fill_value=0).abs().sum())
        else:
            a, b = real[c].dropna().to_numpy(float), synth[c].dropna().to_numpy(float)
            out[c] = 1.0 - float(ks_2samp(a, b).statistic) if len(a) and len(b) else 0.0
    return out


def _binned(real: pd.Series, synth: pd.Series, kind: str, bins: int) -> tuple[pd.Series, pd.Series]:
    if kind == "categorical":
        return _cat(real), _cat(synth)
    edges = np.unique(np.nanquantile(real.to_numpy(float), np.linspace(0, 1, bins + 1)[1:-1]))
    def f(s: pd.Series) -> pd.Series:
        v = s.to_numpy(float)
        return pd.Series(np.where(np.isnan(v), -1, np.searchsorted(edges, v, side="right")), index=s.index).astype(str)
    return f(real), f(synth)


def pair_trends(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str],
                bins: int = 10) -> dict[str, float]:
    """Per column pair "a|b": numeric-numeric correlation similarity 1 - |r_real - r_synth| / 2 (Pearson,
    rows where both are present); any pair with a categorical column: contingency similarity 1 - TV of
    the joint distribution (numeric columns binned at real-data deciles)."""
    out = {}
    for a, b in combinations(list(kinds), 2):
        if not _is_cat(kinds, a) and not _is_cat(kinds, b):
            r = [df[[a, b]].dropna().corr().iloc[0, 1] for df in (real, synth)]
            r = [0.0 if np.isnan(x) else x for x in r]
            out[f"{a}|{b}"] = 1.0 - abs(r[0] - r[1]) / 2.0
        else:
            ra, sa = _binned(real[a], synth[a], kinds[a], bins)
            rb, sb = _binned(real[b], synth[b], kinds[b], bins)
            p = pd.Series(1.0, index=pd.MultiIndex.from_arrays([ra, rb])).groupby(level=[0, 1]).sum() / len(ra)
            q = pd.Series(1.0, index=pd.MultiIndex.from_arrays([sa, sb])).groupby(level=[0, 1]).sum() / len(sa)
            out[f"{a}|{b}"] = 1.0 - 0.5 * float(p.sub(q, fill_value=0).abs().sum())
    return out


class Encoder:
    """One-hot categoricals (missing = own category) + numeric columns (missing indicator, NaN -> median),
    numeric scaled to [0, 1] by the reference's range: rows as vectors for classifiers and distances."""

    def __init__(self, ref: pd.DataFrame, kinds: Mapping[str, str], max_categories: int = 50) -> None:
        self.kinds = dict(kinds)
        self.cats = {c: _cat(ref[c]).value_counts().index[:max_categories].tolist()
                     for c in kinds if _is_cat(kinds, c)}
        num = [c for c in kinds if not _is_cat(kinds, c)]
        self.lo = {c: float(np.nanmin(ref[c])) for c in num}
        self.span = {c: max(float(np.nanmax(ref[c])) - self.lo[c], 1e-12) for c in num}
        self.median = {c: float(np.nanmedian(ref[c])) for c in num}

    def __call__(self, df: pd.DataFrame, missing_indicators: bool = True) -> np.ndarray:
        parts = []
        for c in self.kinds:
            if c in self.cats:
                parts.append((_cat(df[c]).to_numpy()[:, None] == np.array(self.cats[c])[None]).astype(float))
            else:
                v = df[c].to_numpy(float)
                if missing_indicators:
                    parts.append(np.isnan(v)[:, None].astype(float))
                parts.append(((np.where(np.isnan(v), self.median[c], v) - self.lo[c]) / self.span[c])[:, None])
        return np.concatenate(parts, axis=1)


def detection_auc(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str], max_rows: int = 10_000,
                  seed: int = 0, model: str = "logistic") -> float:
    """ROC AUC of a classifier telling real from synthetic rows (3-fold CV on a balanced sample): 0.5 =
    indistinguishable, 1.0 = trivially detected. model="logistic" (SDMetrics' LogisticDetection: one-hot +
    scaled numbers; linear, so it sees marginal differences but not broken dependences) or "gbm"
    (HistGradientBoosting on the raw columns; sees interactions, the stricter test)."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synth), max_rows)
    r, s = real.iloc[rng.choice(len(real), n, replace=False)], synth.iloc[rng.choice(len(synth), n, replace=False)]
    y = np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    if model == "logistic":
        enc = Encoder(real, kinds)
        X = np.vstack([enc(r), enc(s)])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    elif model == "gbm":
        cats = {c: sorted(set(_cat(r[c])) | set(_cat(s[c]))) for c in kinds if _is_cat(kinds, c)}
        X = pd.concat([_gbm_frame(r, kinds, cats), _gbm_frame(s, kinds, cats)], ignore_index=True)
        clf = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=100, random_state=seed)
    else:
        raise ValueError(f"detection model must be 'logistic' or 'gbm', got {model!r}")
    p = cross_val_predict(clf, X, y, cv=cv, method="predict_proba")
    return float(roc_auc_score(y, p[:, 1]))


def _gbm_frame(df: pd.DataFrame, kinds: Mapping[str, str], cats: Mapping[str, list]) -> pd.DataFrame:
    out = {}
    for c in kinds:
        out[c] = pd.Categorical(_cat(df[c]), categories=cats[c]) if c in cats else df[c].to_numpy(float)
    return pd.DataFrame(out, index=df.index)


def is_classification(kinds: Mapping[str, str], train: pd.DataFrame, target: str) -> bool:
    return _is_cat(kinds, target) or (kinds[target] == "integer" and train[target].nunique() <= 20)


def ml_efficacy(train: pd.DataFrame, test: pd.DataFrame, kinds: Mapping[str, str], target: str,
                seed: int = 0) -> dict[str, float]:
    """Train a HistGradientBoosting model on `train` (real or synthetic), score it on the real `test` split.
    Classification: accuracy, macro F1 and ROC AUC (binary); regression: R^2."""
    feats = {c: k for c, k in kinds.items() if c != target}
    cats = {c: sorted(set(_cat(train[c])) | set(_cat(test[c]))) for c in feats if _is_cat(feats, c)}
    Xtr, Xte = _gbm_frame(train, feats, cats), _gbm_frame(test, feats, cats)
    if is_classification(kinds, train, target):
        ytr, yte = _cat(train[target]), _cat(test[target])
        if ytr.nunique() < 2:
            return {"accuracy": float("nan"), "macro_f1": float("nan"), "roc_auc": float("nan")}
        clf = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed).fit(Xtr, ytr)
        pred = clf.predict(Xte)
        out = {"accuracy": float(accuracy_score(yte, pred)), "macro_f1": float(f1_score(yte, pred, average="macro"))}
        if len(clf.classes_) == 2 and yte.nunique() == 2:
            out["roc_auc"] = float(roc_auc_score(yte == clf.classes_[1], clf.predict_proba(Xte)[:, 1]))
        return out
    ok_tr, ok_te = train[target].notna().to_numpy(), test[target].notna().to_numpy()
    reg = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed)
    reg.fit(Xtr[ok_tr], train[target][ok_tr])
    return {"r2": float(r2_score(test[target][ok_te], reg.predict(Xte[ok_te])))}


def distance_to_closest_record(synth: pd.DataFrame, train: pd.DataFrame, kinds: Mapping[str, str],
                               max_rows: int = 2000, seed: int = 0) -> dict[str, float]:
    """Distances from (up to max_rows) synthetic rows to their nearest training row in the Encoder space
    (one-hot + [0, 1]-scaled numbers, Euclidean). Compare with the same numbers for a real held-out split:
    much smaller distances or many exact copies would mean memorisation."""
    rng = np.random.default_rng(seed)
    s = synth.iloc[rng.choice(len(synth), min(len(synth), max_rows), replace=False)]
    enc = Encoder(train, kinds)
    d, _ = NearestNeighbors(n_neighbors=1).fit(enc(train)).kneighbors(enc(s))
    d = d[:, 0]
    return {"median": float(np.median(d)), "p05": float(np.quantile(d, 0.05)), "exact_copies": float(np.mean(d < 1e-9))}


def independent_columns(train: pd.DataFrame, num_rows: int, seed: int = 0) -> pd.DataFrame:
    """Naive baseline: each column resampled independently from its training marginal (keeps every column
    shape, breaks every dependence)."""
    rng = np.random.default_rng(seed)
    idx = {c: rng.integers(0, len(train), num_rows) for c in train.columns}
    return pd.DataFrame({c: pd.Series(train[c].to_numpy()[idx[c]], dtype=train[c].dtype) for c in train.columns})


def fidelity_report(real_train: pd.DataFrame, real_test: pd.DataFrame, synth: pd.DataFrame,
                    kinds: Mapping[str, str], target: str | None, seed: int = 0) -> dict:
    """All synthetic-data metrics for one candidate `synth` against the real training data."""
    shapes, trends = column_shapes(real_train, synth, kinds), pair_trends(real_train, synth, kinds)
    out = {"column_shapes": float(np.mean(list(shapes.values()))), "pair_trends": float(np.mean(list(trends.values()))),
           "detection_auc": detection_auc(real_train, synth, kinds, seed=seed),
           "detection_auc_gbm": detection_auc(real_train, synth, kinds, seed=seed, model="gbm"),
           "dcr": distance_to_closest_record(synth, real_train, kinds, seed=seed),
           "per_column_shapes": shapes}
    if target is not None:
        out["ml_efficacy"] = ml_efficacy(synth, real_test, kinds, target, seed)
    return out


# ---- imputation -------------------------------------------------------------------------------------------
def mask_cells(frame: pd.DataFrame, rate: float, seed: int = 0) -> pd.DataFrame:
    """A copy of frame with each present cell set missing with probability `rate` (MCAR)."""
    rng = np.random.default_rng(seed)
    hide = (rng.random(frame.shape) < rate) & frame.notna().to_numpy()
    out = frame.copy()
    for j, c in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame[c])
        col = out[c].astype(float) if numeric else out[c].astype(object)
        col[hide[:, j]] = np.nan if numeric else None
        out[c] = col
    return out


def simple_impute(train: pd.DataFrame, masked: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Mode for categorical, median for numeric columns (training statistics)."""
    out = masked.copy()
    for c in kinds:
        fill = train[c].mode(dropna=True).iloc[0] if _is_cat(kinds, c) else float(np.nanmedian(train[c]))
        out[c] = out[c].where(out[c].notna(), fill) if _is_cat(kinds, c) else out[c].fillna(fill)
    return out


def knn_impute(train: pd.DataFrame, masked: pd.DataFrame, kinds: Mapping[str, str], k: int = 5,
               max_reference: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """scikit-learn KNNImputer on one-hot + [0, 1]-scaled numeric features (NaN where a cell is missing),
    fitted on up to `max_reference` complete-or-not training rows; a categorical cell takes the category
    with the largest imputed one-hot value. Cells missing in the reference count as their own category."""
    rng = np.random.default_rng(seed)
    ref = train.iloc[rng.choice(len(train), min(len(train), max_reference), replace=False)]
    enc = Encoder(train, kinds)
    blocks, offset = {}, 0
    for c in kinds:
        width = len(enc.cats[c]) if c in enc.cats else 1
        blocks[c], offset = slice(offset, offset + width), offset + width

    def features(df: pd.DataFrame) -> np.ndarray:
        X = enc(df, missing_indicators=False)
        for c in kinds:
            X[df[c].isna().to_numpy(), blocks[c]] = np.nan  # missing -> unknown to KNN
        return X

    Xm = KNNImputer(n_neighbors=k).fit(enc(ref, missing_indicators=False)).transform(features(masked))
    out = masked.copy()
    for c in kinds:
        miss = masked[c].isna().to_numpy()
        if c in enc.cats:
            vals = np.array(enc.cats[c], dtype=object)[Xm[:, blocks[c]].argmax(1)]
            vals = np.where(vals == MISSING, enc.cats[c][0], vals)  # "missing" is not an answer
            col = out[c].astype(object)
            col[miss] = vals[miss]
        else:
            v = Xm[:, blocks[c]][:, 0] * enc.span[c] + enc.lo[c]
            if kinds[c] == "integer":
                v = np.round(v)
            col = out[c].astype(float)
            col[miss] = v[miss]
        out[c] = col
    return out


def imputation_scores(truth: pd.DataFrame, masked: pd.DataFrame, imputed: pd.DataFrame,
                      kinds: Mapping[str, str], train: pd.DataFrame) -> dict:
    """On the cells masked (present in truth, missing in masked): accuracy per categorical column, RMSE per
    numeric column (raw and divided by the training standard deviation); means over columns."""
    acc, rmse, nrmse = {}, {}, {}
    for c in kinds:
        hid = (masked[c].isna() & truth[c].notna()).to_numpy()
        if not hid.any():
            continue
        if _is_cat(kinds, c):
            acc[c] = float(np.mean(_cat(imputed[c])[hid].to_numpy() == _cat(truth[c])[hid].to_numpy()))
        else:
            err = imputed[c].to_numpy(float)[hid] - truth[c].to_numpy(float)[hid]
            rmse[c] = float(np.sqrt(np.mean(err**2)))
            nrmse[c] = rmse[c] / float(np.nanstd(train[c]))
    return {"accuracy": float(np.mean(list(acc.values()))) if acc else float("nan"),
            "nrmse": float(np.mean(list(nrmse.values()))) if nrmse else float("nan"),
            "per_column_accuracy": acc, "per_column_rmse": rmse, "per_column_nrmse": nrmse}

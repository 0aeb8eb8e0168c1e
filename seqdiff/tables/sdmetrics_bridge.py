"""The field's synthetic-table scores, computed by SDMetrics itself (the library behind the numbers TabDDPM,
TabSyn and TabDiff report), beside seqdiff's own numpy/scikit-learn versions in seqdiff.tables.metrics.

- `column_shapes`, `column_pair_trends`: SDMetrics' QualityReport properties (KSComplement / TVComplement per
  column; CorrelationSimilarity / ContingencySimilarity per pair). TabSyn and TabDiff report these as error
  rates in percent: shape error = 100 x (1 - column_shapes), trend error = 100 x (1 - column_pair_trends).
- `logistic_detection`: SDMetrics' LogisticDetection, 1 - (2 x max(AUC, 0.5) - 1): 1 = indistinguishable.

SDMetrics is optional (`pip install 'seqdiff[peers]'`; it needs pandas < 3): `available()` says whether it can
be imported, and `sdmetrics_report` raises a clear ImportError when it cannot.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

log = logging.getLogger("seqdiff.sdmetrics")


def available() -> bool:
    return importlib.util.find_spec("sdmetrics") is not None


def metadata(kinds: Mapping[str, str]) -> dict:
    """SDMetrics single-table metadata from seqdiff's column kinds (categorical | numeric | integer)."""
    return {"columns": {c: {"sdtype": "categorical" if k == "categorical" else "numerical"} for c, k in kinds.items()}}


def _frame(df: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    # SDMetrics wants numbers as floats (NaN missing) and categories as objects (NaN missing), in kinds' order.
    out = {c: (df[c].astype(object).where(df[c].notna(), None) if k == "categorical" else df[c].astype(float))
           for c, k in kinds.items()}
    return pd.DataFrame(out, index=df.index)


def sdmetrics_report(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str],
                     detection: bool = True) -> dict:
    """SDMetrics' column shapes, column pair trends (and logistic detection) of `synth` against `real`."""
    if not available():
        raise ImportError("SDMetrics is not installed: pip install 'seqdiff[peers]' (it needs pandas < 3)")
    with warnings.catch_warnings():  # 0.2x deprecates the single-table report; it is the one TabSyn/TabDiff use
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport
    from sdmetrics.single_table import LogisticDetection

    md, r, s = metadata(kinds), _frame(real, kinds), _frame(synth, kinds)
    with warnings.catch_warnings():  # SDMetrics' logistic regression warns about convergence on one-hot data
        warnings.simplefilter("ignore")
        report = QualityReport()
        report.generate(r, s, md, verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        out = {"column_shapes": float(props["Column Shapes"]), "column_pair_trends": float(props["Column Pair Trends"]),
               "quality_score": float(report.get_score())}
        if detection:
            # SDMetrics fits its encoders on the real rows and fails on a category (or missing value) they lack:
            # such synthetic rows are left out of detection and counted (none for generators fitted on `real`).
            def key(x: pd.Series) -> pd.Series:
                return x.astype(object).where(x.notna(), "\0missing").astype(str)

            unseen = np.zeros(len(s), dtype=bool)
            for c, k in kinds.items():
                if k == "categorical":
                    unseen |= ~key(s[c]).isin(set(key(r[c]))).to_numpy()
            out["logistic_detection"] = float(LogisticDetection.compute(r, s[~unseen], md))
            out["detection_rows_left_out"] = int(unseen.sum())
    out["shape_error_pct"] = 100.0 * (1.0 - out["column_shapes"])
    out["trend_error_pct"] = 100.0 * (1.0 - out["column_pair_trends"])
    return out

"""`evaluate_table(cfg)` (scripts/evaluate_table.py, configs/evaluate_table.yaml): fidelity, ML efficacy,
privacy and imputation of a table model against the real held-out data (upper bound) and independent
per-column sampling (naive baseline).

    python scripts/evaluate_table.py checkpoint=PATH out=benchmarks/adult.json

Writes JSON and a markdown table (same path, .md).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from seqdiff.io import write_text
from seqdiff.tables import metrics as T
from seqdiff.tables import sdmetrics_bridge as sdm
from seqdiff.tables.data import read_table
from seqdiff.tables.sampling import impute_frame, load_table_model, sample_frame

log = logging.getLogger("seqdiff.evaluate_table")


def evaluate_table(cfg: DictConfig) -> dict:
    model = load_table_model(cfg.checkpoint)
    tok, kinds = model.tokenizer, model.tokenizer.kinds
    data = model.datamodule()  # with the fitted tokenizer: not refitted
    train, test, target = data.train_frame, data.test_frame, data.target
    rng = np.random.default_rng(cfg.seed)
    n = int(cfg.num_rows)
    timings = {}
    t0 = time.perf_counter()
    if cfg.synthetic:
        synth, _ = read_table(cfg.synthetic, kinds)
        synth = synth[tok.names]
    else:
        synth = sample_frame(model.backbone, tok, n, cfg.steps, model.schedule, cfg.batch_size, cfg.seed)
    timings["sample_seconds"] = time.perf_counter() - t0
    synth = synth.astype({c: float for c, k in kinds.items() if k != "categorical"})
    candidates = {
        "real held-out (upper bound)": test.iloc[rng.choice(len(test), min(n, len(test)), replace=False)],
        "seqdiff": synth,
        "independent columns (baseline)": T.independent_columns(train, n, cfg.seed),
    }
    for name, path in (cfg.peers or {}).items():  # other generators' rows (scripts/table_peers.py), same scoring
        candidates[name] = read_table(path, kinds)[0][tok.names].astype(
            {c: float for c, k in kinds.items() if k != "categorical"})
    use_sdm = sdm.available() if cfg.sdmetrics == "auto" else bool(cfg.sdmetrics)
    fidelity = {}
    for name, frame in candidates.items():
        t0 = time.perf_counter()
        fidelity[name] = T.fidelity_report(train, test, frame, kinds, target, cfg.seed)
        if name.startswith("real") and target is not None:  # train-on-real: a same-size sample of train
            real_train = train.iloc[rng.choice(len(train), min(n, len(train)), replace=False)]
            fidelity[name]["ml_efficacy"] = T.ml_efficacy(real_train, test, kinds, target, cfg.seed)
        if use_sdm:  # the same rows scored by SDMetrics itself, against the same real training split
            fidelity[name]["sdmetrics"] = sdm.sdmetrics_report(train, frame, kinds)
        timings[f"fidelity_seconds[{name}]"] = time.perf_counter() - t0
        log.info("%s: %s", name, {k: v for k, v in fidelity[name].items() if k != "per_column_shapes"})

    truth = test.iloc[rng.choice(len(test), min(int(cfg.impute_rows), len(test)), replace=False)]
    masked = T.mask_cells(truth, cfg.impute_rate, cfg.seed)
    imputers = {
        "mode/median": lambda: T.simple_impute(train, masked, kinds),
        f"KNN (k={cfg.knn_k})": lambda: T.knn_impute(train, masked, kinds, cfg.knn_k, seed=cfg.seed),
        "seqdiff (1 draw)": lambda: impute_frame(model.backbone, tok, masked, None, 1, cfg.steps, model.schedule,
                                                 cfg.batch_size, cfg.seed),
        f"seqdiff ({cfg.num_draws} draws)": lambda: impute_frame(model.backbone, tok, masked, None, cfg.num_draws,
                                                                 cfg.steps, model.schedule, cfg.batch_size,
                                                                 cfg.seed),
    }
    imputation = {}
    for name, fn in imputers.items():
        t0 = time.perf_counter()
        imputed = fn()
        imputation[name] = T.imputation_scores(truth, masked, imputed, kinds, train)
        imputation[name]["seconds"] = time.perf_counter() - t0
        log.info("imputation %s: accuracy %.4f nrmse %.4f", name, imputation[name]["accuracy"],
                 imputation[name]["nrmse"])
    result = {"checkpoint": str(cfg.checkpoint), "config": OmegaConf.to_container(cfg),
              "rows": {"train": len(train), "test": len(test), "synthetic": len(synth)},
              "masked_cells": int((masked.isna() & truth.notna()).to_numpy().sum()),
              "fidelity": fidelity, "imputation": imputation, "timings": timings}
    out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent.parent / "eval_table.json"
    write_text(out, json.dumps(result, indent=2) + "\n")
    write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    lines = ["| rows | column shapes ↑ | pair trends ↑ | detection AUC, logistic / GBM (0.5 best) | "
             "ML efficacy acc / AUC ↑ | DCR median | exact copies |", "|---|---|---|---|---|---|---|"]
    for name, f in r["fidelity"].items():
        ml = f.get("ml_efficacy", {})
        mls = f"{ml.get('accuracy', float('nan')):.4f} / {ml.get('roc_auc', float('nan')):.4f}" if ml else "-"
        lines.append(f"| {name} | {f['column_shapes']:.4f} | {f['pair_trends']:.4f} | "
                     f"{f['detection_auc']:.4f} / {f['detection_auc_gbm']:.4f} | "
                     f"{mls} | {f['dcr']['median']:.4f} | {f['dcr']['exact_copies']:.4f} |")
    if any("sdmetrics" in f for f in r["fidelity"].values()):
        lines += ["", "The same rows scored by SDMetrics (QualityReport, LogisticDetection; 1 = like the real data):",
                  "", "| rows | column shapes ↑ | column pair trends ↑ | shape / trend error % ↓ | "
                  "logistic detection ↑ |", "|---|---|---|---|---|"]
        for name, f in r["fidelity"].items():
            s = f.get("sdmetrics")
            if s:
                lines.append(f"| {name} | {s['column_shapes']:.4f} | {s['column_pair_trends']:.4f} | "
                             f"{s['shape_error_pct']:.2f} / {s['trend_error_pct']:.2f} | "
                             f"{s.get('logistic_detection', float('nan')):.4f} |")
    lines += ["", f"Imputation of {r['masked_cells']} cells masked at random (rate "
              f"{r['config']['impute_rate']}) in {r['config']['impute_rows']} real test rows:", "",
              "| imputer | categorical accuracy ↑ | numeric RMSE / train std ↓ |", "|---|---|---|"]
    for name, s in r["imputation"].items():
        lines.append(f"| {name} | {s['accuracy']:.4f} | {s['nrmse']:.4f} |")
    cols = next(iter(r["imputation"].values()))
    lines += ["", "| imputer | " + " | ".join(cols["per_column_accuracy"]) + " | "
              + " | ".join(f"{c} (RMSE)" for c in cols["per_column_rmse"]) + " |",
              "|---" * (1 + len(cols["per_column_accuracy"]) + len(cols["per_column_rmse"])) + "|"]
    for name, s in r["imputation"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in s["per_column_accuracy"].values()) + " | "
                     + " | ".join(f"{v:.1f}" for v in s["per_column_rmse"].values()) + " |")
    return "\n".join(lines) + "\n"

"""`results_dna(cfg)`: trained runs vs the best Markov model on identical held-out windows (scripts/results_dna.py).

Writes <out>.json, <out>.md and <out>.png: each run's learning curve (in-training validation bits/base against
training seconds, from its curve.json) with its final test score, beside the Markov chain's lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

import seqdiff
from seqdiff.dna.markov import best_markov
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import atomic_write

log = logging.getLogger("seqdiff.dna.results_dna")


def _windows(dm, split: str) -> torch.Tensor:
    dm.setup("test" if split == "test" else "validate")
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    return torch.cat([b["x0"] for b in loader])  # (N, L)


def results_dna(cfg: DictConfig) -> dict:
    runs = [Path(r) for r in cfg.runs]
    if not runs:
        raise ValueError("give at least one run directory: runs=[outputs/demo]")
    first = seqdiff.load(runs[0] / "checkpoints" / "last.ckpt")
    dm = first.datamodule(max_eval_windows=int(cfg.max_eval_windows), batch_size=int(cfg.batch_size))
    test, valid = _windows(dm, "test"), _windows(dm, "valid")
    bpt = getattr(first.tokenizer, "bases_per_token", 1)

    # Markov baseline on exactly the model's training region, base-level (ids 0..4 = A C G T N).
    t0 = time.perf_counter()
    train_seqs = dm.split_codes("train")
    if bpt != 1:
        raise ValueError("the Markov comparison needs a character-level (one token per base) model")
    markov, scores = best_markov(train_seqs, [w.numpy() for w in valid], list(cfg.markov_orders),
                                 alphabet=5, alpha=float(cfg.markov_alpha))
    markov_test = markov.bits_per_token([w.numpy() for w in test])
    log.info("Markov: best order %d on valid (%.4f), test %.4f bits/base (%.0f s)", markov.order,
             scores[markov.order], markov_test, time.perf_counter() - t0)

    rows = []
    for run in runs:
        model = seqdiff.load(run / "checkpoints" / "last.ckpt")
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        res = evaluate_likelihood(model.backbone, model.tokenizer, test.split(int(cfg.batch_size)),
                                  objective=model.objective, schedule=model.schedule,
                                  timestep_samples=int(cfg.timestep_samples), seed=int(cfg.seed),
                                  family=model.family)
        rows.append({
            "run": str(run), "objective": model.objective, "model": model.config["model"]["_target_"],
            "parameters": sum(p.numel() for p in model.backbone.parameters()),
            "steps": metrics.get("global_step"), "train_seconds": metrics.get("fit_seconds"),
            "train_tokens_per_second": metrics.get("train_tokens_per_second"),
            "test_bits_per_base": res.bits_per_base, "test_stderr": res.stderr,
            "vs_markov_percent": 100.0 * (res.bits_per_base - markov_test) / markov_test,
            "curve": json.loads((run / "curve.json").read_text()) if (run / "curve.json").is_file() else [],
        })
    out = {
        "test_windows": int(test.shape[0]), "window_bases": int(test.shape[1]) * bpt,
        "markov": {"order": markov.order, "test_bits_per_base": markov_test,
                   "valid_bits_per_base_by_order": scores, "train_bases": int(sum(len(s) for s in train_seqs))},
        "runs": rows,
    }
    with atomic_write(cfg.out) as f:
        f.write(json.dumps(out, indent=2) + "\n")
    md = [f"Test windows: {out['test_windows']} x {out['window_bases']} bp (same windows for every row).", "",
          "| model | params | steps | train tokens/s | test bits/base | vs Markov |", "|---|---|---|---|---|---|",
          f"| Markov order {markov.order} (chosen on valid) | - | - | - | {markov_test:.4f} | - |"]
    for r in rows:
        tps = r["train_tokens_per_second"]
        md.append(f"| {r['run']} ({r['objective']}) | {r['parameters'] / 1e6:.2f}M | {r['steps']} | "
                  f"{tps:,.0f} | {r['test_bits_per_base']:.4f} ± {r['test_stderr']:.4f} | "
                  f"{r['vs_markov_percent']:+.2f}% |" if tps else
                  f"| {r['run']} ({r['objective']}) | {r['parameters'] / 1e6:.2f}M | {r['steps']} | - | "
                  f"{r['test_bits_per_base']:.4f} ± {r['test_stderr']:.4f} | {r['vs_markov_percent']:+.2f}% |")
    with atomic_write(Path(cfg.out).with_suffix(".md")) as f:
        f.write("\n".join(md) + "\n")
    plot_learning_curves(out, Path(cfg.out).with_suffix(".png"))
    print("\n".join(md))
    return out


def plot_learning_curves(results: dict, path: Path) -> None:
    """Held-out bits/base against training seconds for every run (line: in-training validation; star: final
    test score on the shared test windows), with the best Markov chain on the validation and test windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqdiff.io import savefig

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markov = results["markov"]
    for i, r in enumerate(results["runs"]):
        color = f"C{i % 10}"
        label = f"{Path(r['run']).name} ({r['objective']})"
        pts = [p for p in r.get("curve") or [] if "val/bpb" in p and "train_seconds" in p]
        if pts:
            ax.plot([p["train_seconds"] for p in pts], [p["val/bpb"] for p in pts], marker=".", color=color,
                    label=f"{label}: validation during training")
        if r.get("train_seconds"):
            ax.plot([r["train_seconds"]], [r["test_bits_per_base"]], marker="*", ms=12, color=color, ls="none",
                    label=f"{label}: test {r['test_bits_per_base']:.4f}")
    by_order = {int(k): v for k, v in markov["valid_bits_per_base_by_order"].items()}  # JSON keys are strings
    valid_markov = by_order[int(markov["order"])]
    ax.axhline(valid_markov, color="k", ls="--", lw=1,
               label=f"Markov order {markov['order']}: validation {valid_markov:.4f}")
    ax.axhline(markov["test_bits_per_base"], color="k", ls=":", lw=1,
               label=f"Markov order {markov['order']}: test {markov['test_bits_per_base']:.4f}")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("held-out bits/base")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    savefig(fig, path)
    plt.close(fig)

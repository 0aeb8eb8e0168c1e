"""`compare_families(cfg)`: MDLM vs UDLM vs SEDD-absorbing vs SEDD-uniform, one command
(scripts/compare_families.py, configs/compare_families.yaml).

1. Train each family with the same model, data and step budget (`common` overrides + the family's own),
   each in its own `scripts/train.py` process and run directory; a finished run (metrics.json present) is
   reused, an interrupted one resumes. `budget_minutes` caps every run's wall clock (Lightning max_time);
   the measured training seconds are reported so equal wall clock can be checked.
2. bits/base on the same held-out test windows for every family (its own NELBO; all are upper bounds).
3. Sample quality at equal network calls: for each step budget K, every family draws `num_samples`
   windows with K reverse steps and no logit caching (so K network calls each), bases only; k-mer JS
   divergence to held-out test windows, next to the real-vs-real floor (validation windows vs the same
   reference).

Writes `<out>.json` and `<out>.md`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import seqdiff
from seqdiff.diffusion.families import family_of
from seqdiff.dna import metrics as ev
from seqdiff.dna.spec import Design
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.io import machine_info, write_report
from seqdiff.sampling import sample
from seqdiff.sampling.families import FamilySampler

log = logging.getLogger("seqdiff.compare_families")
REPO = Path(__file__).resolve().parents[2]


def train_family(name: str, overrides: list[str], run_dir: Path, budget_minutes: float | None) -> dict:
    """Train (or resume, or reuse) one family in a subprocess; returns its metrics.json."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        log.info("%s: reusing finished run %s", name, run_dir)
        return json.loads(metrics.read_text())
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    if budget_minutes:
        total = int(round(60 * float(budget_minutes)))
        cmd.append(f"+trainer.max_time='00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}'")
    log.info("%s: %s", name, " ".join(cmd))
    # the child imports the same seqdiff as this process (a worktree's, not whatever the venv installed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"training {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(metrics.read_text())


def _windows(dm, split: str) -> torch.Tensor:
    dm.setup("test" if split == "test" else "validate")
    return torch.cat([b["x0"] for b in (dm.test_dataloader() if split == "test" else dm.val_dataloader())])


def compare_families(cfg: DictConfig) -> dict:
    root = Path(cfg.run_root)
    names = [n for n, ov in cfg.families.items() if ov is not None]
    if not names:
        raise ValueError("every family is null; nothing to compare")
    common = [str(o) for o in cfg.common]
    train_metrics = {n: train_family(n, common + [str(o) for o in cfg.families[n]], root / n, cfg.budget_minutes)
                     for n in names}
    models = {n: seqdiff.load(root / n / "checkpoints" / "last.ckpt") for n in names}
    first = models[names[0]]
    tok = first.tokenizer
    for n, m in models.items():
        if m.tokenizer.config() != tok.config() or m.config["data"] != first.config["data"]:
            raise ValueError(f"{n} was trained on other data or another tokenizer than {names[0]}: not comparable")
    data_cfg = dict(first.config["data"])
    data_cfg.update(max_eval_windows=int(cfg.max_eval_windows), batch_size=int(cfg.batch_size))
    dm = instantiate(data_cfg, tokenizer=tok)
    test, valid = _windows(dm, "test"), _windows(dm, "valid")
    L = int(test.shape[1])
    bpt = int(getattr(tok, "bases_per_token", 1))
    rng = np.random.default_rng(int(cfg.seed))
    reference = [tok.decode(w) for w in test]
    floor_idx = rng.choice(len(valid), size=min(int(cfg.num_samples), len(valid)), replace=False)
    floor = ev.kmer_js([tok.decode(valid[i]) for i in floor_idx], reference, cfg.ks)
    bases_only = Design(L * bpt).compile().constraints(tok)

    rows = {}
    for n in names:
        m = models[n]
        t0 = time.perf_counter()
        lik = evaluate_likelihood(m.backbone, tok, test.split(int(cfg.batch_size)), objective=m.objective,
                                  schedule=m.schedule, timestep_samples=int(cfg.timestep_samples),
                                  seed=int(cfg.seed), progress=False, family=m.family)
        fam = family_of(m)
        samples = {}
        for K in cfg.steps:
            g = torch.Generator().manual_seed(int(cfg.seed))
            seqs, nfe = [], 0
            for a in range(0, int(cfg.num_samples), int(cfg.batch_size)):
                b = min(int(cfg.batch_size), int(cfg.num_samples) - a)
                out = sample(m.backbone, tok.mask_id, b, L, FamilySampler(fam, int(K)), constraints=bases_only,
                             generator=g, cache=False)
                seqs += [tok.decode(x) for x in out.tokens]
                nfe = max(nfe, out.nfe)
            samples[int(K)] = {"network_calls": nfe, "js": ev.kmer_js(seqs, reference, cfg.ks)}
        tm = train_metrics[n]
        rows[n] = {"family": fam.name, "process": type(fam.process).__name__,
                   "parameterization": type(fam.parameterization).__name__,
                   "parameters": sum(p.numel() for p in m.backbone.parameters()),
                   "steps": tm.get("global_step"), "train_seconds": tm.get("fit_seconds"),
                   "train_tokens_per_second": tm.get("train_tokens_per_second"),
                   "test_bits_per_base": lik.bits_per_base, "test_stderr": lik.stderr,
                   "samples": samples, "eval_seconds": time.perf_counter() - t0}
        log.info("%s: %.4f bits/base; JS k=3 %s", n, lik.bits_per_base,
                 {K: round(s["js"][3], 4) for K, s in samples.items() if 3 in s["js"]})
    out = {"config": OmegaConf.to_container(cfg, resolve=True), "test_windows": int(test.shape[0]),
           "window_bases": L * bpt, "real_vs_real_js": floor, "families": rows,
           "machine": machine_info()}
    write_report(cfg.out, out, markdown(out, list(cfg.steps), int(cfg.headline_k)))
    return out


def markdown(out: dict, steps: list[int], k: int) -> str:
    head = ("| family | process | parameterisation | params | steps | train s | test bits/base | "
            + " | ".join(f"{k}-mer JS @ {K} calls" for K in steps) + " |")
    lines = [f"Test windows: {out['test_windows']} x {out['window_bases']} bp (the same for every row). "
             f"Real-vs-real {k}-mer JS (validation vs test windows): {out['real_vs_real_js'][k]:.4f}.", "",
             head, "|" + "---|" * (7 + len(steps))]
    for n, r in out["families"].items():
        secs = f"{r['train_seconds']:.0f}" if r["train_seconds"] else "-"
        js = " | ".join(f"{r['samples'][K]['js'][k]:.4f}" for K in steps)
        lines.append(f"| {n} | {r['process']} | {r['parameterization']} | {r['parameters'] / 1e6:.2f}M | "
                     f"{r['steps']} | {secs} | {r['test_bits_per_base']:.4f} ± {r['test_stderr']:.4f} | {js} |")
    return "\n".join(lines)

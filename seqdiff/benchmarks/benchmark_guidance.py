"""`benchmark_guidance(cfg)`: guided design on the splice-junction task (scripts/benchmark_guidance.py,
configs/benchmark_guidance.yaml).

For each noise process (a class-conditional denoiser, and a noisy classifier trained on the same process) and
each requested class (ei, ie, n), 60 bp designs with fixed flanks (the first and last `flank` bases of a random
test sequence, redrawn per batch) are generated unguided (guidance scale 0: the denoiser's "no label" mode),
with classifier-free guidance and with classifier guidance at several scales. Each set is scored by:

- judged: the fraction an independent judge assigns to the requested class. The judge is a CNN trained on the
  task's training split only (validation carved from it) and checked on the test split; it shares no weights
  with the denoiser or the guide;
- k-mer JS divergence to the real test sequences of that class (k = 1..4), next to the real-vs-real floor
  (training sequences of the class, as many as designs, vs the same reference);
- diversity: mean pairwise identity between designs over the free (non-flank) positions (real: the same for
  real test sequences of the class);
- memorisation: identity of each design to its nearest training sequence (all classes, aligned, since every
  splice window is centred on the junction): mean, and fraction >= 0.9;
- constraints: the fraction of designs whose flanks are exactly in place (must be 1).

goal: judged >= 0.9 and JS(k=3) <= 1.5 x the unguided set's, with every constraint satisfied.
"""

from __future__ import annotations

import logging
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
from seqdiff.io import machine_info, write_report
from seqdiff.sampling import sample
from seqdiff.sampling.families import FamilySampler
from seqdiff.sampling.guidance import cfg_guide, classifier_guide

log = logging.getLogger("seqdiff.benchmark_guidance")


def train_judge(cfg: DictConfig, task, tokenizer) -> tuple[torch.nn.Module, dict]:
    """The CNN judge, trained on the training split (best validation epoch) and tested on the test split."""
    import lightning as L

    from seqdiff.dna.downstream.classifier import SequenceClassifier
    from seqdiff.dna.downstream.encoders import CNNEncoder
    from seqdiff.dna.downstream.protocol import Context, fit_and_test

    L.seed_everything(int(cfg.seed), workers=True)
    j = cfg.judge
    module = SequenceClassifier(CNNEncoder(tokenizer.vocab_size, tokenizer.pad_id, int(j.channels), int(j.kernel_size),
                                           int(j.n_layers), str(j.pool)), task.num_classes, tokenizer.pad_id,
                                lr=float(j.lr), dropout=float(j.dropout))
    ctx = Context(tokenizer=tokenizer, trainer=j.trainer, batch_size=int(j.batch_size), run_dir=Path(cfg.work_dir),
                  keep_checkpoints=True)
    metrics = fit_and_test(module, task, int(cfg.seed), ctx, None, "judge")
    module.load_state_dict(torch.load(metrics["checkpoint"], map_location="cpu", weights_only=False)["state_dict"])
    return module.eval(), metrics


@torch.no_grad()
def judge_probs(judge: torch.nn.Module, tokenizer, seqs: list[str]) -> np.ndarray:
    x = torch.tensor([tokenizer.encode(s) for s in seqs], dtype=torch.long)
    return judge(x).softmax(-1).numpy()


def _codes(seqs: list[str]) -> np.ndarray:
    return np.stack([ev.encode(s) for s in seqs])


def mean_pairwise_identity(codes: np.ndarray) -> float:
    n = len(codes)
    if n < 2:
        return float("nan")
    same = (codes[:, None, :] == codes[None, :, :]).mean(-1)
    return float(same[np.triu_indices(n, 1)].mean())


def nearest_identity(codes: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Aligned identity of each row to its nearest training row (splice windows share coordinates)."""
    return np.stack([(c[None, :] == train).mean(-1).max() for c in codes])


def score_set(seqs: list[str], cls: int, judge, tok, reference: list[str], train_codes: np.ndarray,
              free: slice, compiled_ok: list[bool], ks) -> dict:
    probs = judge_probs(judge, tok, seqs)
    codes = _codes(seqs)
    nn = nearest_identity(codes, train_codes)
    js = ev.kmer_js(seqs, reference, ks)
    return {"judged": float((probs.argmax(-1) == cls).mean()), "judge_prob": float(probs[:, cls].mean()),
            **{f"js_k{k}": v for k, v in js.items()},
            "pairwise_identity": mean_pairwise_identity(codes[:, free]),
            "nn_identity_mean": float(nn.mean()), "nn_identity_ge_0.9": float((nn >= 0.9).mean()),
            "satisfied": float(np.mean(compiled_ok))}


def _design(den, fam, guide, cls_name: str, cfg: DictConfig, task, rng: np.random.Generator,
            g: torch.Generator) -> tuple[list[str], list[bool], int, int]:
    """num_samples designs of 60 bp in batches, each batch with the flanks of a random test sequence."""
    tok, L, flank = den.tokenizer, len(task.test_sequences[0]), int(cfg.flank)
    seqs, ok, nfe, calls = [], [], 0, 0
    for a in range(0, int(cfg.num_samples), int(cfg.batch_size)):
        b = min(int(cfg.batch_size), int(cfg.num_samples) - a)
        src = task.test_sequences[int(rng.integers(len(task.test_sequences)))]
        compiled = Design(L).flanks(src[:flank], src[L - flank:] if flank else "").compile()
        before = getattr(guide, "calls", 0)
        out = sample(den.backbone, tok.mask_id, b, L, FamilySampler(fam, int(cfg.steps), guide),
                     constraints=compiled.constraints(tok), generator=g, cache=False)
        nfe += out.nfe
        calls += getattr(guide, "calls", 0) - before
        for x in out.tokens:
            s = tok.decode(x)
            seqs.append(s)
            ok.append(compiled.satisfied(s))
    return seqs, ok, nfe, calls


def benchmark_guidance(cfg: DictConfig) -> dict:
    task = instantiate(cfg.task)
    models = {noise: m for noise, m in cfg.models.items() if m is not None}
    if not models:
        raise ValueError("every entry of models is null; nothing to benchmark")
    dens = {noise: seqdiff.load(m.denoiser) for noise, m in models.items()}
    tok = next(iter(dens.values())).tokenizer
    for noise, den in dens.items():
        if den.classes != list(task.classes):
            raise ValueError(f"models.{noise}.denoiser was trained on classes {den.classes}, the task has "
                             f"{list(task.classes)}")
    seeds = [int(s) for s in (cfg.get("seeds") or [cfg.seed])]
    judges, reals, rows = {}, {}, []
    for seed in seeds:
        judges[seed], reals[seed], seed_rows = _run_seed(cfg, seed, task, models, dens, tok)
        rows += seed_rows
    out = {"config": OmegaConf.to_container(cfg, resolve=True), "seeds": seeds,
           "judge": judges[seeds[0]], "real": reals[seeds[0]], "judges": judges, "reals": reals,
           "rows": rows, "summary": summarize(rows), "machine": machine_info()}
    write_report(cfg.out, out, markdown(out))
    return out


def _run_seed(cfg: DictConfig, seed: int, task, models: dict, dens: dict, tok) -> tuple[dict, dict, list[dict]]:
    """One replicate: a judge trained with this seed, and every setting's designs drawn with it (the flanks of
    each batch come from a seeded draw of test sequences, the same for every setting of the replicate)."""
    cfg = OmegaConf.merge(cfg, {"seed": seed})
    t0 = time.perf_counter()
    judge, judge_metrics = train_judge(cfg, task, tok)
    log.info("seed %d judge: test accuracy %.4f (%.0f s)", seed, judge_metrics["acc"], time.perf_counter() - t0)

    L, flank = len(task.test_sequences[0]), int(cfg.flank)
    free = slice(flank, L - flank)
    train_codes = _codes(task.train_sequences)
    rng = np.random.default_rng(seed)
    reference, real = {}, {}
    for c in task.classes:
        reference[c] = [s for s, y in zip(task.test_sequences, task.test_labels, strict=True) if y == c]
        pool = [s for s, y in zip(task.train_sequences, task.train_labels, strict=True) if y == c]
        floor_set = [pool[i] for i in rng.choice(len(pool), min(int(cfg.num_samples), len(pool)), replace=False)]
        real[c] = {**{f"js_k{k}": v for k, v in ev.kmer_js(floor_set, reference[c], cfg.ks).items()},
                   "pairwise_identity": mean_pairwise_identity(_codes(reference[c])[:, free]),
                   "nn_identity_mean": float(nearest_identity(_codes(reference[c]), train_codes).mean())}

    rows = []
    for noise, den in dens.items():
        fam = family_of(den)
        full = (0.0, 1.0)
        intervals = [tuple(float(v) for v in iv) for iv in (cfg.get("cfg_intervals") or [full])]
        methods = [("unguided", 0.0, None, full)]
        methods += [("cfg", float(s), "cfg", iv) for iv in intervals for s in cfg.cfg_scales]
        if models[noise].get("classifier"):
            methods += [("classifier", float(s), "classifier", full) for s in cfg.classifier_scales]
        for method, scale, kind, interval in methods:
            for ci, c in enumerate(task.classes):
                if kind is None:
                    guide = None
                elif kind == "cfg":
                    guide = cfg_guide(den, c, scale, interval)
                else:
                    guide = classifier_guide(models[noise].classifier, den, c, scale, str(cfg.classifier_mode))
                g = torch.Generator().manual_seed(seed)
                t1 = time.perf_counter()
                seqs, ok, nfe, calls = _design(den, fam, guide, c, cfg, task, np.random.default_rng(seed), g)
                row = {"seed": seed, "noise": noise, "family": fam.name, "method": method, "scale": scale,
                       "class": c, "interval": list(interval), "network_calls": nfe, "classifier_calls": calls,
                       "seconds": time.perf_counter() - t1,
                       **score_set(seqs, ci, judge, tok, reference[c], train_codes, free, ok, cfg.ks)}
                rows.append(row)
                log.info("seed %d %s %s %.1f %s %s: judged %.3f js3 %.4f", seed, noise, method, scale, interval, c,
                         row["judged"], row.get("js_k3", float("nan")))
    for r in rows:  # the goal, against the unguided set of the same noise, class and replicate
        base = next(b for b in rows
                    if b["noise"] == r["noise"] and b["method"] == "unguided" and b["class"] == r["class"])
        r["js_ratio_vs_unguided"] = r["js_k3"] / base["js_k3"] if base["js_k3"] > 0 else float("nan")
        r["goal"] = bool(r["judged"] >= 0.9 and r["js_ratio_vs_unguided"] <= 1.5 and r["satisfied"] == 1.0)
    return judge_metrics, real, rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std over replicates of each setting (noise, method, scale, interval, class); the goal on
    the means."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["noise"], r["method"], r["scale"], tuple(r["interval"]), r["class"]), []).append(r)
    out = []
    for (noise, method, scale, interval, c), rs in groups.items():
        s = {"noise": noise, "method": method, "scale": scale, "interval": list(interval), "class": c, "n": len(rs)}
        for key in ("judged", "js_k3", "js_ratio_vs_unguided", "pairwise_identity", "satisfied"):
            v = np.array([r[key] for r in rs], dtype=float)
            s[key], s[key + "_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        s["goal"] = bool(s["judged"] >= 0.9 and s["js_ratio_vs_unguided"] <= 1.5 and s["satisfied"] == 1.0)
        out.append(s)
    return out


def markdown(out: dict) -> str:
    lines = []
    if len(out.get("seeds", [])) > 1:
        accs = ", ".join(f"{100 * j['acc']:.1f}%" for j in out["judges"].values())
        lines += [f"Mean ± std over {len(out['seeds'])} replicates (seeds {out['seeds']}: each its own judge, test "
                  f"accuracy {accs}, and its own flank draws); goal on the means.", "",
                  "| noise | method | scale | t interval | class | judged | 3-mer JS / unguided | pairwise id. "
                  "| satisfied | goal |", "|" + "---|" * 10]
        for r in out["summary"]:
            lo, hi = r["interval"]
            lines.append(f"| {r['noise']} | {r['method']} | {r['scale']:g} | {lo:g}-{hi:g} | {r['class']} | "
                         f"{r['judged']:.3f} ± {r['judged_std']:.3f} | {r['js_ratio_vs_unguided']:.2f} ± "
                         f"{r['js_ratio_vs_unguided_std']:.2f} | {r['pairwise_identity']:.3f} | "
                         f"{r['satisfied']:.2f} | {'yes' if r['goal'] else 'no'} |")
        lines += ["", "Per replicate:", ""]
    j = out["judge"]
    lines += [f"Judge: CNN trained on the training split, test accuracy {100 * j['acc']:.1f}%. Per class: "
             + "; ".join(f"{c}: real 3-mer JS floor {r['js_k3']:.4f}, pairwise identity {r['pairwise_identity']:.3f}, "
                         f"NN identity {r['nn_identity_mean']:.3f}" for c, r in out["real"].items()), "",
             "| seed | noise | method | scale | t interval | class | judged | 3-mer JS | JS / unguided | pairwise id. "
             "| NN id. (>=0.9) | satisfied | calls | goal |", "|" + "---|" * 14]
    for r in out["rows"]:
        lo, hi = r.get("interval", (0.0, 1.0))
        lines.append(f"| {r.get('seed', '')} | {r['noise']} | {r['method']} | {r['scale']:g} | {lo:g}-{hi:g} | "
                     f"{r['class']} | {r['judged']:.3f} | "
                     f"{r['js_k3']:.4f} | {r['js_ratio_vs_unguided']:.2f} | {r['pairwise_identity']:.3f} | "
                     f"{r['nn_identity_mean']:.3f} ({r['nn_identity_ge_0.9']:.2f}) | {r['satisfied']:.2f} | "
                     f"{r['network_calls']}+{r['classifier_calls']} | {'yes' if r['goal'] else 'no'} |")
    return "\n".join(lines)

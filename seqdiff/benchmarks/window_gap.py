"""Where does one model beat another? Bits per base window by window on held-out data, for an AR checkpoint
(exact NLL) or a masked-diffusion checkpoint (bits per masked base at one fixed mask rate, so two MDLM models
see the same masks), the spread of the per-window difference, the windows that carry it, and a copy test.

`python scripts/window_gap.py 'checkpoints=[A,B]'` (configs/window_gap.yaml). The copy test scores windows
made of a half window followed by the same half again: a model that copies from its context predicts the second
half almost for free; one that does not scores it like fresh sequence.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from seqdiff.diffusion.objective import LN2, ar_nll
from seqdiff.evaluation.likelihood import masked_nll_at_rate, t_for_mask_rate
from seqdiff.io import machine_info, write_report

log = logging.getLogger("seqdiff.window_gap")


@torch.no_grad()
def position_bits(model, windows: torch.Tensor, mask_rate: float, draws: int, seed: int,
                  batch_size: int = 16, scored: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits, counts), each (N, L): bits summed over draws per position and how often each position was scored.
    AR: every position once (exact NLL). MDLM: each draw masks positions with probability `mask_rate`, only
    where `scored` (N, L) is True (all positions by default), and scores the masked ones."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.zeros(windows.shape, dtype=torch.float64)
    counts = torch.zeros(windows.shape, dtype=torch.float64)
    scored = torch.ones_like(windows, dtype=torch.bool) if scored is None else scored
    t = t_for_mask_rate(model.schedule, mask_rate) if model.objective != "ar" else 0.0
    for a in range(0, len(windows), batch_size):
        x, sc = windows[a : a + batch_size], scored[a : a + batch_size]
        if model.objective == "ar":
            nll = ar_nll(model.backbone, x, model.tokenizer.bos_id)
            bits[a : a + len(x)] += torch.where(sc, nll / LN2, 0).double()
            counts[a : a + len(x)] += sc.double()
            continue
        for _ in range(draws):
            nll, masked = masked_nll_at_rate(model.backbone, x, mask_rate, t, model.mask_id, g, sc)
            bits[a : a + len(x)] += torch.where(masked, nll / LN2, 0).double()
            counts[a : a + len(x)] += masked.double()
    return bits, counts


def window_means(bits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return bits.sum(-1) / counts.sum(-1).clamp_min(1)


def gap_summary(a: torch.Tensor, b: torch.Tensor, top_frac: float = 0.1) -> dict:
    """Per-window bits a, b (N,): quantiles of b - a and the share of the total gap (b - a summed) carried
    by the top `top_frac` windows where b is worse (a share > 1: the rest of the windows favour b)."""
    d = (b - a).double()
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    k = max(1, round(top_frac * len(d)))
    top = d.sort(descending=True).values[:k].sum()
    total = d.sum()
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_gap": float(d.mean()),
            "gap_quantiles": dict(zip(["q05", "q25", "q50", "q75", "q95"], d.quantile(q).tolist(), strict=True)),
            "windows_b_worse": int((d > 0).sum()), "windows": len(d),
            "top_frac": top_frac, "top_share_of_gap": float(top / total) if total != 0 else float("nan")}


def repeat_windows(windows: torch.Tensor) -> torch.Tensor:
    """Each window's first half followed by the same half again (an exact tandem copy)."""
    half = windows.shape[1] // 2
    return torch.cat([windows[:, :half], windows[:, :half]], dim=1)


def copy_test(model, windows: torch.Tensor, mask_rate: float, draws: int, seed: int) -> dict:
    """Bits per base on the second half of plain windows vs of [h, h] windows (first half unmasked for MDLM)."""
    half = windows.shape[1] // 2
    second = torch.zeros_like(windows, dtype=torch.bool)
    second[:, half : 2 * half] = True
    out = {}
    for name, w in (("plain", windows), ("repeat", repeat_windows(windows))):
        bits, counts = position_bits(model, w, mask_rate, draws, seed, scored=second)
        out[name] = float(bits.sum() / counts.sum().clamp_min(1))
    return out


def window_gap(cfg: DictConfig) -> dict:
    import seqdiff

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if len(cfg.checkpoints) != 2:
        raise ValueError(f"checkpoints must name two checkpoints (A, B), got {len(cfg.checkpoints)}")
    models = [seqdiff.load(p) for p in cfg.checkpoints]
    if models[0].tokenizer.config() != models[1].tokenizer.config():
        raise ValueError("the two checkpoints use different tokenizers: their windows are not comparable")
    dm = models[0].datamodule(max_eval_windows=int(cfg.max_windows), batch_size=int(cfg.batch_size))
    dm.setup("validate" if cfg.split == "valid" else "test")
    loader = dm.val_dataloader() if cfg.split == "valid" else dm.test_dataloader()
    windows = torch.cat([b["x0"] for b in loader])[: int(cfg.max_windows)]
    rate, draws, seed = float(cfg.mask_rate), int(cfg.draws), int(cfg.seed)
    per_window, rows = [], []
    for path, m in zip(cfg.checkpoints, models, strict=True):
        bits, counts = position_bits(m, windows, rate, draws, seed, int(cfg.batch_size))
        w = window_means(bits, counts)
        per_window.append(w)
        halves = [float(bits[:, s].sum() / counts[:, s].sum().clamp_min(1))
                  for s in (slice(0, windows.shape[1] // 2), slice(windows.shape[1] // 2, None))]
        rows.append({"checkpoint": str(path), "objective": m.objective,
                     "scored_as": "exact NLL" if m.objective == "ar" else f"masked bases at mask rate {rate}",
                     "bits_per_base": float(bits.sum() / counts.sum()), "first_half": halves[0],
                     "second_half": halves[1], "copy_test": copy_test(m, windows, rate, draws, seed)})
        log.info("%s: %.4f bits/base", path, rows[-1]["bits_per_base"])
    summary = gap_summary(per_window[0], per_window[1], float(cfg.top_frac))
    d = per_window[1] - per_window[0]
    order = d.argsort(descending=True).tolist()
    tok = models[0].tokenizer
    show = int(cfg.show)
    extremes = {side: [{"window": i, "a": float(per_window[0][i]), "b": float(per_window[1][i]),
                        "start": tok.decode(windows[i, : int(cfg.show_bases)].tolist())} for i in idx]
                for side, idx in (("b_worse", order[:show]), ("b_better", order[::-1][:show]))}
    out = {"config": OmegaConf.to_container(cfg, resolve=True), "models": rows, "gap": summary,
           "windows": extremes, "per_window": [w.tolist() for w in per_window],
           "machine": machine_info()}
    write_report(cfg.out, out, markdown(out))
    return out


def markdown(out: dict) -> str:
    cfg, g = out["config"], out["gap"]
    lines = [f"Windows: {g['windows']} from the {cfg['split']} split; A = {cfg['checkpoints'][0]}, "
             f"B = {cfg['checkpoints'][1]}.", "",
             "| model | scored as | bits/base | first half | second half | copy test: 2nd half plain / repeated |",
             "|---|---|---|---|---|---|"]
    for name, r in zip("AB", out["models"], strict=True):
        c = r["copy_test"]
        lines.append(f"| {name} ({r['objective']}) | {r['scored_as']} | {r['bits_per_base']:.4f} | "
                     f"{r['first_half']:.4f} | {r['second_half']:.4f} | {c['plain']:.4f} / {c['repeat']:.4f} |")
    q = g["gap_quantiles"]
    lines += ["", f"B - A per window (bits/base): mean {g['mean_gap']:+.4f}; quantiles 5/25/50/75/95%: "
              + " / ".join(f"{v:+.3f}" for v in q.values())
              + f"; B worse on {g['windows_b_worse']} of {g['windows']} windows; the {g['top_frac']:.0%} of "
              f"windows where B is worst carry {g['top_share_of_gap']:.0%} of the total gap.", "",
              "| where | window | A | B | first bases |", "|---|---|---|---|---|"]
    for side, rows in out["windows"].items():
        for r in rows:
            lines.append(f"| {side.replace('_', ' ')} | {r['window']} | {r['a']:.3f} | {r['b']:.3f} | `{r['start']}` |")
    return "\n".join(lines)

"""Held-out likelihood in bits per base: MDLM NELBO (an upper bound) or exact AR NLL.

`evaluate_likelihood` averages over a dataset's windows (with a standard error); `nelbo_bits_per_base` scores
each sequence of a batch, windowing sequences longer than the model. Both draw t through `nelbo_draws`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqdiff.device import randperm
from seqdiff.diffusion.objective import LN2, ar_nll, clean_log_probs, mdlm_nelbo
from seqdiff.noise import Schedule, add_noise, sample_t


@dataclass
class LikelihoodResult:
    bits_per_base: float  # NELBO (MDLM, an upper bound) or NLL (AR): total nats / total real bases / ln 2
    stderr: float  # standard error of bits_per_base over windows (and timestep draws), ratio estimator
    bits_per_token: float  # total nats / total tokens / ln 2
    tokens: int
    windows: int
    timestep_samples: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_likelihood(
    backbone: nn.Module,
    tokenizer,
    batches: Iterable[Tensor],
    objective: str = "mdlm",
    schedule: Schedule | None = None,
    timestep_samples: int = 8,
    seed: int = 0,
    progress: bool = True,
    device: torch.device | str = "cpu",
    family: Any = None,
) -> LikelihoodResult:
    """Bits per base over windows x0 (each batch LongTensor[B, L]): nats and real bases summed over all windows,
    then divided (so a short window weighs by its length, not as much as a full one). Bases are counted per
    token with the tokenizer's `token_bases` when it has one (a short k-mer tail token counts its own bases),
    else `bases_per_token` per non-pad token.

    For MDLM every window is scored with `timestep_samples` antithetic draws of t, so the reported
    standard error covers both window-to-window and Monte Carlo variance. The generator stays on the CPU so
    a seed gives the same timesteps on any device. `family` (a seqdiff.diffusion.families.Family: uniform
    noise, score entropy) replaces the MDLM NELBO by its own.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    token_bases = getattr(tokenizer, "token_bases", None)
    if token_bases is not None:
        token_bases = token_bases.to(device)
    bpt_nominal = getattr(tokenizer, "bases_per_token", 1)
    win_nats, win_bases, win_tokens = [], [], []  # per window: nats summed over tokens, real bases, tokens
    for x0 in tqdm(batches, desc="likelihood", disable=not progress, leave=False):
        x0 = x0.to(device)
        mask = x0 != tokenizer.pad_id
        if objective == "ar":
            nats = ar_nll(backbone, x0, tokenizer.bos_id, mask)
        else:
            if schedule is None:
                raise ValueError("an MDLM likelihood needs the model's noise schedule")
            nats = torch.zeros(x0.shape, device=device)
            # seeded masks too (noise_generator=g): the same seed gives the same estimate
            for draw in nelbo_draws(backbone, x0, schedule, tokenizer.mask_id, mask, timestep_samples, g, shuffle=True,
                                    noise_generator=g, family=family):
                nats += draw
            nats /= timestep_samples
        win_nats.append(nats.double().sum(-1).cpu())
        win_tokens.append(mask.sum(-1).cpu())
        bases = token_bases[x0] if token_bases is not None else torch.full_like(x0, bpt_nominal)
        win_bases.append(torch.where(mask, bases, 0).sum(-1).cpu())
    if not win_nats:
        raise ValueError("no windows to evaluate (empty split or every window was mostly N)")
    nats_w, bases_w = torch.cat(win_nats), torch.cat(win_bases).double()
    tokens = int(torch.cat(win_tokens).sum())
    ratio = float(nats_w.sum() / bases_w.sum().clamp_min(1))  # nats per base
    m = len(nats_w)
    # standard error of a ratio of sums over windows (first-order / delta method)
    resid = nats_w - ratio * bases_w
    se = float(resid.pow(2).sum().div(m * (m - 1)).sqrt() / bases_w.mean()) if m > 1 else float("nan")
    bpt = float(nats_w.sum()) / max(tokens, 1) / LN2
    return LikelihoodResult(ratio / LN2, se / LN2, bpt, tokens, m, timestep_samples if objective != "ar" else 0)


def nelbo_draws(backbone: nn.Module, x0: Tensor, schedule: Schedule, mask_id: int, loss_mask: Tensor,
                timestep_samples: int, generator: torch.Generator | None = None, shuffle: bool = False,
                noise_generator: torch.Generator | None = None, family: Any = None) -> Iterator[Tensor]:
    """Per-token NELBO nats (B, L) of x0 (B, L) for each of `timestep_samples` antithetic draws of t (drawn
    with `generator`, in a random order across the batch if `shuffle`); the noise comes from `noise_generator`.
    Generators may live on the CPU or on x0's device: draws happen on the generator's device (seqdiff.device).
    `family` (seqdiff.diffusion.families.Family) scores with that family's NELBO instead of MDLM's."""
    B = x0.shape[0]
    t_all = sample_t(B * timestep_samples, generator=generator, antithetic=True, eps=schedule.eps, device=x0.device)
    if shuffle:
        t_all = t_all[randperm(len(t_all), generator, t_all.device)]
    for t in t_all.view(timestep_samples, B):
        if family is not None:
            yield family.nelbo(backbone, x0, t, loss_mask, generator=noise_generator)
        else:
            yield mdlm_nelbo(backbone, x0, schedule, t, mask_id, loss_mask, generator=noise_generator)


@torch.no_grad()
def nelbo_bits_per_base(backbone: nn.Module, tokens: Tensor, schedule: Schedule, mask_id: int, pad_id: int,
                        bases_per_token: int = 1, timestep_samples: int = 16,
                        generator: torch.Generator | None = None, family: Any = None) -> Tensor:
    """(B,) MDLM NELBO bits/base of each sequence (B, L), scored window by window (the model's max_len),
    `timestep_samples` antithetic draws of t per window; a short last window is padded and the pad ignored.
    Computed on the tokens' device; returned on the CPU. `family` scores with that family's NELBO instead."""
    B, L = tokens.shape
    W = int(getattr(backbone, "max_len", L))
    nats = torch.zeros(B, dtype=torch.float64, device=tokens.device)
    counted = torch.zeros(B, dtype=torch.float64, device=tokens.device)
    for a in range(0, L, W):
        x0 = tokens[:, a : a + W]
        if x0.shape[1] < W:
            x0 = torch.cat([x0, x0.new_full((B, W - x0.shape[1]), pad_id)], dim=1)
        keep = x0 != pad_id
        for draw in nelbo_draws(backbone, x0, schedule, mask_id, keep, timestep_samples, generator,
                                noise_generator=generator, family=family):
            nats += draw.sum(-1).double()
        counted += keep.sum(-1).double() * timestep_samples
    return (nats / counted / LN2 / bases_per_token).float().cpu()


def t_for_mask_rate(schedule: Schedule, rate: float, iters: int = 60) -> float:
    """The t at which a fraction `rate` of tokens is masked, 1 - alpha(t) = rate (bisection: alpha decreases)."""
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if 1.0 - float(schedule.alpha(torch.tensor([mid]))[0]) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def masked_nll_at_rate(backbone: nn.Module, x0: Tensor, rate: float, t: float, mask_id: int,
                       generator: torch.Generator | None = None,
                       maskable: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mask each `maskable` token of x0 (B, L) with probability `rate` (the noise level t, with
    1 - alpha(t) = rate, is passed to the backbone) and return (nats (B, L) of -log p(x0) under SUBS, masked
    (B, L) bool): the loss counts only where masked."""
    B = x0.shape[0]
    xt = add_noise(x0, torch.full((B,), 1.0 - rate, device=x0.device), mask_id, generator=generator,
                   maskable=maskable)
    nll = -clean_log_probs(backbone(xt, torch.full((B,), t, device=x0.device)), mask_id)
    return nll.gather(-1, x0.unsqueeze(-1)).squeeze(-1), xt == mask_id


@torch.no_grad()
def mask_rate_profile(backbone: nn.Module, tokenizer, batches: Iterable[Tensor], schedule: Schedule,
                      rates: Iterable[float], seed: int = 0, device: torch.device | str = "cpu",
                      progress: bool = True) -> list[dict]:
    """An absorbing-noise model's loss at each noise level: for each mask rate r, mask every token of every
    window independently with probability r and average -log2 p(x0) over the masked tokens. The MDLM NELBO
    per token is the area under this curve over r in (0, 1) for any schedule (with r = 1 - alpha(t),
    -alpha'(t) / (1 - alpha(t)) x (1 - alpha(t)) dt = dr), so the profile shows which noise levels the bound
    loses its bits at. Returns [{mask_rate, bits_per_masked_token, bits_per_masked_base, masked_tokens}]."""
    rates = [float(r) for r in rates]
    if not rates or not all(0.0 < r <= 1.0 for r in rates):
        raise ValueError(f"mask rates must be in (0, 1], got {rates}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    ts = {r: t_for_mask_rate(schedule, r) for r in rates}
    nats = torch.zeros(len(rates), dtype=torch.float64, device=device)  # summed on the device: no per-batch sync
    count = torch.zeros(len(rates), dtype=torch.int64, device=device)
    for x0 in tqdm(batches, desc="mask-rate profile", disable=not progress, leave=False):
        x0 = x0.to(device)
        keep = x0 != tokenizer.pad_id
        for i, r in enumerate(rates):
            nll, masked = masked_nll_at_rate(backbone, x0, r, ts[r], tokenizer.mask_id, g, keep)
            nats[i] += nll[masked].double().sum()
            count[i] += masked.sum()
    bpt = getattr(tokenizer, "bases_per_token", 1)
    out = []
    for r, n, c in zip(rates, nats.tolist(), count.tolist(), strict=True):
        bits = n / max(c, 1) / LN2
        out.append({"mask_rate": r, "bits_per_masked_token": bits, "bits_per_masked_base": bits / bpt,
                    "masked_tokens": c})
    return out

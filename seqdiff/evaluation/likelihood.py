"""Held-out likelihood in bits per base: MDLM NELBO (an upper bound) or exact AR NLL."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqdiff.diffusion.objective import ar_nll, mdlm_nelbo
from seqdiff.noise import Schedule, sample_t

LN2 = math.log(2.0)


@dataclass
class LikelihoodResult:
    bits_per_base: float  # NELBO (MDLM, an upper bound) or NLL (AR), per base
    stderr: float  # standard error of bits_per_base over windows (and timestep draws)
    bits_per_token: float
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
) -> LikelihoodResult:
    """Average bits/base over windows x0 (each batch LongTensor[B, L]).

    For MDLM every window is scored with `timestep_samples` antithetic draws of t, so the reported
    standard error covers both window-to-window and Monte Carlo variance.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    per_window: list[Tensor] = []  # nats per token per window
    tokens = 0
    for x0 in tqdm(batches, desc="likelihood", disable=not progress, leave=False):
        x0 = x0.to(device)
        mask = x0 != tokenizer.pad_id
        if objective == "ar":
            nats = ar_nll(backbone, x0, tokenizer.bos_id, mask)
        else:
            if schedule is None:
                raise ValueError("an MDLM likelihood needs the model's noise schedule")
            nats = torch.zeros(x0.shape, device=device)
            B = x0.shape[0]
            t_all = sample_t(B * timestep_samples, generator=g, antithetic=True, eps=schedule.eps).to(device)
            t_all = t_all[torch.randperm(len(t_all), generator=g)].view(timestep_samples, B)
            for k in range(timestep_samples):
                nats += mdlm_nelbo(backbone, x0, schedule, t_all[k], tokenizer.mask_id, mask, generator=g)
            nats /= timestep_samples
        n = mask.sum(-1).clamp_min(1)
        per_window.append((nats.sum(-1) / n).cpu())
        tokens += int(mask.sum())
    if not per_window:
        raise ValueError("no windows to evaluate (empty split or every window was mostly N)")
    w = torch.cat(per_window).double()
    bpt = float(w.mean()) / LN2
    se = float(w.std(unbiased=True) / math.sqrt(len(w))) / LN2 if len(w) > 1 else float("nan")
    bpb = bpt / getattr(tokenizer, "bases_per_token", 1)
    return LikelihoodResult(bpb, se / getattr(tokenizer, "bases_per_token", 1), bpt, tokens, len(w),
                            timestep_samples if objective != "ar" else 0)

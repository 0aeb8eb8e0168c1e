"""SUBS parameterisation and the continuous-time NELBO of masked diffusion (pure functions, no Lightning)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqdiff.noise import Schedule, add_noise

LN2 = math.log(2.0)  # nats / LN2 = bits


def subs_log_probs(logits: Tensor, xt: Tensor, mask_id: int) -> Tensor:
    """SUBS parameterisation of p(x0 | xt): (B, L, V) log-probabilities.

    Zero masking probability: the mask token is never predicted as a clean token. Carry-over unmasking:
    positions already unmasked in xt are copied (log-prob 0 on xt, -inf elsewhere), so the model is only
    asked about masked positions.
    """
    logits = logits.float().clone()
    logits[..., mask_id] = -torch.inf
    log_probs = logits.log_softmax(dim=-1)
    unmasked = xt != mask_id  # (B, L)
    if unmasked.any():
        carry = torch.full_like(log_probs, -torch.inf)
        carry.scatter_(-1, xt.unsqueeze(-1), 0.0)
        log_probs = torch.where(unmasked.unsqueeze(-1), carry, log_probs)
    return log_probs


def clean_log_probs(logits: Tensor, mask_id: int) -> Tensor:
    """log p(x0 | xt) over clean tokens from raw logits (B, L, V), in fp32: SUBS's zero mask probability only
    (only masked positions carry loss, so no carry-over is needed). Out of place: under FSDP an in-place write
    into the backbone's output (which .float() returns as is in fp32) breaks the backward hooks FSDP
    registered on it (tests/test_distributed.py)."""
    is_mask = torch.arange(logits.shape[-1], device=logits.device) == mask_id  # (V,), no host copy
    return logits.float().masked_fill(is_mask, -torch.inf).log_softmax(-1)


def mdlm_nelbo(
    backbone: nn.Module,
    x0: Tensor,
    schedule: Schedule,
    t: Tensor,
    mask_id: int,
    loss_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    soft_targets: Tensor | None = None,
    soft_weight: float = 0.0,
) -> Tensor:
    """Per-token continuous-time NELBO terms in nats, (B, L); zero where loss_mask is False or unmasked.

    NELBO = E_t E_q [ -alpha'(t) / (1 - alpha(t)) * sum_{l masked} -log p(x0_l | xt) ].
    Averaging the (B, L) result over tokens (and over t) estimates nats per token.
    """
    if loss_mask is None:
        loss_mask = torch.ones_like(x0, dtype=torch.bool)
    xt = add_noise(x0, schedule.alpha(t), mask_id, generator=generator, maskable=loss_mask)
    log_p = clean_log_probs(backbone(xt, t), mask_id)
    nll = -log_p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    if soft_targets is not None and soft_weight > 0:  # training only: see seqdiff.dna.teacher
        soft = -(soft_targets.float() * log_p[..., : soft_targets.shape[-1]]).sum(-1)
        nll = (1.0 - soft_weight) * nll + soft_weight * soft
    masked = (xt == mask_id) & loss_mask
    weight = schedule.loss_weight(t)[:, None]  # (B, 1)
    return torch.where(masked, weight * nll, torch.zeros_like(nll))


def ar_nll(backbone: nn.Module, x0: Tensor, bos_id: int, loss_mask: Tensor | None = None) -> Tensor:
    """Per-token next-token NLL in nats (B, L) for a causal backbone: position l is predicted from
    bos, x0[:l]. Zero where loss_mask is False."""
    if loss_mask is None:
        loss_mask = torch.ones_like(x0, dtype=torch.bool)
    inputs = torch.cat([torch.full_like(x0[:, :1], bos_id), x0[:, :-1]], dim=1)
    logits = backbone(inputs, None).float()
    nll = -logits.log_softmax(-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return torch.where(loss_mask, nll, torch.zeros_like(nll))

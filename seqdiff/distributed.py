"""What `SequenceLM` needs to train correctly under FSDP (and stay correct under DDP or one device).

Behaviour relied on, read in the library sources (Lightning 2.6.6, PyTorch 2.13):
- Lightning's `FSDPStrategy.setup` wraps the whole LightningModule in FSDP *before* it calls
  `configure_optimizers`; with `use_orig_params=True` (Lightning's default) every parameter is then a flat 1-D
  view of this rank's shard, named with `_fsdp_wrapped_module.` inserted. So anything decided from `p.ndim` or
  from parameter attributes must be decided before wrapping, and names must be cleaned of wrapper prefixes.
- `FSDPPrecision.clip_grad_by_norm` raises ("gradient_clip_algorithm='norm' is currently not supported") because
  a norm over local shards is wrong; the root FSDP module's `clip_grad_norm_` all-reduces the total norm. Clipping
  by value is elementwise and stays Lightning's.
- `ModuleWrapPolicy` wraps every module that is an *instance* of a listed class (subclasses included). A
  backbone class missing from the policy leaves its parameters, and its EMA copy's, in one shared flat
  parameter of the root unit, whose per-parameter shard views then differ between the two and the EMA
  `_foreach_lerp_` fails. `check_fsdp_units` refuses that case with a clear error at setup.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Prefixes that module wrappers insert into parameter names: FSDP (use_orig_params), activation checkpointing
# and torch.compile.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """A parameter name as the unwrapped module spells it."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def wants_decay(name: str, p: nn.Parameter) -> bool:
    """AdamW weight decay for matrices only: not biases, norms, embeddings, or parameters flagged
    `_no_weight_decay` (mamba-ssm's convention, which exempts a Mamba block's `A_log` and `D`)."""
    return p.ndim >= 2 and "embed" not in name and not getattr(p, "_no_weight_decay", False)


def decay_by_name(module: nn.Module) -> dict[str, bool]:
    """{parameter name: gets weight decay}, recorded from the unwrapped module (before FSDP flattens it)."""
    return {clean_name(n): wants_decay(clean_name(n), p) for n, p in module.named_parameters()}


def param_groups(module: nn.Module, decay: dict[str, bool], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups [decayed, not decayed] of `module`'s trainable parameters, decided by name from `decay`
    (so the grouping is the same whether or not the module has been wrapped and flattened since)."""
    groups: dict[bool, list[nn.Parameter]] = {True: [], False: []}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        key = clean_name(name)
        if key not in decay:
            raise KeyError(f"parameter {key!r} was not present when the weight-decay groups were recorded")
        groups[decay[key]].append(p)
    return [{"params": groups[True], "weight_decay": weight_decay}, {"params": groups[False], "weight_decay": 0.0}]


def backbone_wrap_policy():
    """FSDP auto-wrap policy with every seqdiff backbone and its blocks as units (configs/trainer/fsdp.yaml).

    Each backbone (and so its EMA copy, built by deepcopy) becomes its own FSDP unit with identical sharding,
    and each block a unit inside it, so at most one block's parameters are gathered at a time."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from seqdiff.backbones.caduceus import BiMamba, MambaBlock  # CaduceusPS / CaduceusPh are BiMambas
    from seqdiff.backbones.transformer import Block, Transformer

    return ModuleWrapPolicy({Transformer, Block, BiMamba, MambaBlock})


def fsdp_root(trainer: Any) -> nn.Module | None:
    """The root FSDP module Lightning trains (the wrapped LightningModule), or None when not under FSDP."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = getattr(getattr(trainer, "strategy", None), "model", None)
    return model if isinstance(model, FullyShardedDataParallel) else None


def check_fsdp_units(*modules: nn.Module) -> None:
    """Under FSDP, the backbone and its EMA copy must each be an FSDP unit of their own (see module doc)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    for m in modules:
        if m is not None and not isinstance(m, FullyShardedDataParallel):
            raise ValueError(
                f"FSDP: backbone {type(m).__name__} was not wrapped as its own FSDP unit, so it and its EMA copy "
                "would share one flat parameter; use trainer.strategy.auto_wrap_policy="
                "{_target_: seqdiff.distributed.backbone_wrap_policy} and list its class there"
            )


def clip_sharded_grad_norm(trainer: Any, max_norm: float | None, algorithm: Any) -> bool:
    """Clip by total norm through the FSDP root when training under FSDP; returns True if it clipped.

    Elsewhere (one device, DDP, or clipping by value) returns False and Lightning's own clipping applies."""
    root = fsdp_root(trainer)
    algorithm = "norm" if algorithm is None else str(getattr(algorithm, "value", algorithm)).lower()
    if root is None or not max_norm or algorithm != "norm":  # None means norm, as in Lightning's clip_gradients
        return False
    root.clip_grad_norm_(float(max_norm))  # all-reduces the squared shard norms: the true total norm
    return True


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (shards, under FSDP)."""
    ema_params, params = list(ema.parameters()), [p.detach() for p in model.parameters()]
    if len(ema_params) != len(params) or any(a.shape != b.shape for a, b in zip(ema_params, params, strict=True)):
        raise RuntimeError("EMA and model parameters do not line up (differently wrapped or sharded?)")
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)

"""Test-only helpers for the distributed tests (tests/test_distributed.py), loaded by
`_target_: helpers.distributed.<Class>` in subprocesses (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy

from seqdiff.distributed import clean_name


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy, accepted with accelerator=cpu; everything else is Lightning's own code.

    Two things stand between Lightning's FSDP and a CPU (Lightning 2.6.6, torch 2.13), neither of which the GPU
    path goes through: Lightning refuses FSDP without a GPU by an exact type check (`type(strategy) is
    FSDPStrategy`, trainer/connectors/accelerator_connector.py), which a subclass passes; and it wraps with
    `device_id=root_device.index`, None on CPU, for which torch's FSDP then looks for an accelerator, so the
    wrapping here passes `device_id=cpu` (torch's FSDP runs on CPU over gloo with it). And a full state dict
    with `offload_to_cpu=True` (what Lightning asks for, to move CUDA shards to host memory) segfaults rank 0
    when the shards already live on the CPU (torch 2.13, reproduced with plain FSDP), so the state-dict
    contexts here gather without offloading. The whole FSDP path (wrapping, flat parameters,
    configure_optimizers, clipping, EMA update, full-state checkpoint) then runs."""

    def lightning_module_state_dict(self):
        with _no_cpu_offload():
            return super().lightning_module_state_dict()

    def optimizer_state(self, optimizer):
        with _no_cpu_offload():
            return super().optimizer_state(optimizer)

    def load_checkpoint(self, *args, **kwargs):
        with _no_cpu_offload():
            return super().load_checkpoint(*args, **kwargs)

    def _setup_model(self, model):
        import torch.distributed.fsdp as fsdp

        orig = fsdp.FullyShardedDataParallel

        class OnCPU(orig):  # instances are FullyShardedDataParallel for every isinstance check
            def __init__(self, module, *args, device_id=None, **kwargs):
                super().__init__(module, *args, device_id=torch.device("cpu"), **kwargs)

        fsdp.FullyShardedDataParallel = OnCPU  # Lightning imports the name inside _setup_model
        try:
            return super()._setup_model(model)
        finally:
            fsdp.FullyShardedDataParallel = orig


class ParamGroupProbe(L.Callback):
    """At train start, write each rank's optimizer groups as {weight_decay: [clean parameter names]} and whether
    the backbone / EMA are FSDP units, to `<out>/rank<r>.json`."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        names = {id(p): clean_name(n) for n, p in pl_module.backbone.named_parameters()}
        groups = {str(g["weight_decay"]): sorted(names[id(p)] for p in g["params"])
                  for g in trainer.optimizers[0].param_groups}
        info = {"groups": groups, "ndims": sorted({p.ndim for p in pl_module.backbone.parameters()}),
                "backbone_fsdp": isinstance(pl_module.backbone, FullyShardedDataParallel),
                "ema_fsdp": isinstance(pl_module.ema, FullyShardedDataParallel)}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


@contextlib.contextmanager
def _no_cpu_offload():
    """Lightning's full-state-dict context with offload_to_cpu=False (see CPUFSDPStrategy)."""
    import lightning.pytorch.strategies.fsdp as lfsdp
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.api import FullOptimStateDictConfig

    orig = lfsdp._get_full_state_dict_context

    def context(module, world_size, rank0_only=True):
        return FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
                                    FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only))

    lfsdp._get_full_state_dict_context = context
    try:
        yield
    finally:
        lfsdp._get_full_state_dict_context = orig

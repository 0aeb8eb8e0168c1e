"""The FSDP / DDP / multi-process paths, checked on CPU.

Fast tests build each strategy's configuration and check what a review found: parameter groups decided by name
under flat (1-D, prefixed) parameters, the FSDP wrap policy covering every backbone and its blocks, the clipping
path under FSDP, the Lightning version's set_epoch forwarding, prepare-once data. The slow test runs
`scripts/train.py trainer=fsdp` as 2 real gloo processes on CPU with a BiMamba (the review's crashing case);
DDP's 2-process gloo test is tests/test_reliability_ddp.py. These are the two strategies PyTorch runs on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch import nn

import seqdiff
import seqdiff.distributed as sd
from seqdiff.backbones import BiMamba, CaduceusPh, CaduceusPS, Transformer
from seqdiff.backbones.caduceus import MambaBlock
from seqdiff.backbones.transformer import Block
from seqdiff.diffusion.lightning import DiffusionLM
from seqdiff.dna.datamodule import GenomeDataModule
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.dna.windows import EpochSampler

from helpers import CHR20 as FASTA
from helpers import CHR20_BED as BED
from helpers import ROOT, compose, subprocess_env

TOK = NucleotideTokenizer()
COMP = TOK.complement_ids.tolist()


def backbones() -> dict[str, nn.Module]:
    kw = dict(vocab_size=TOK.vocab_size, max_len=32)
    return {
        "transformer": Transformer(**kw, d_model=16, n_layers=2, n_heads=2, d_cond=16),
        "bimamba": BiMamba(**kw, d_model=16, n_layers=2),
        "caduceus_ps": CaduceusPS(**kw, d_model=16, n_layers=2, complement_ids=COMP),
        "caduceus_ph": CaduceusPh(**kw, d_model=16, n_layers=2, complement_ids=COMP, time_conditioning=True),
    }


def flatten_like_fsdp(module: nn.Module) -> nn.Module:
    """What configure_optimizers sees after FSDP(use_orig_params=True) wrapping: every parameter a 1-D shard
    view, every name with `_fsdp_wrapped_module.` inserted (here: one wrapper level around the module)."""
    for sub in list(module.modules()):
        for name, p in list(sub.named_parameters(recurse=False)):
            setattr(sub, name, nn.Parameter(p.detach().flatten().clone(), requires_grad=p.requires_grad))
    wrapper = nn.Module()
    wrapper._fsdp_wrapped_module = module
    return wrapper


def attach_trainer(module, root=None) -> None:
    module._trainer = SimpleNamespace(estimated_stepping_batches=10, strategy=SimpleNamespace(model=root))


@pytest.mark.parametrize("name", ["transformer", "bimamba"])
def test_weight_decay_groups_by_name_survive_flat_parameters(name):
    module = DiffusionLM(backbones()[name], TOK)
    expected = {n: sd.wants_decay(n, p) for n, p in module.backbone.named_parameters()}
    assert any(expected.values()) and not all(expected.values())
    module.backbone = flatten_like_fsdp(module.backbone)
    assert {p.ndim for p in module.backbone.parameters()} == {1}  # the old `p.ndim >= 2` rule: no decay at all
    attach_trainer(module)
    opt = module.configure_optimizers()["optimizer"]
    names = {id(p): sd.clean_name(n) for n, p in module.backbone.named_parameters()}
    got = {names[id(p)]: g["weight_decay"] > 0 for g in opt.param_groups for p in g["params"]}
    assert got == expected
    assert [g["weight_decay"] for g in opt.param_groups] == [module.weight_decay, 0.0]


def test_mamba_a_log_and_d_get_no_weight_decay():
    decay = DiffusionLM(backbones()["bimamba"], TOK).decay_by_name
    assert decay["blocks.0.mixer.in_proj.weight"] and decay["blocks.0.mixer.x_proj"]
    for n in ("A_log", "D", "dt_bias", "conv.bias"):
        assert decay[f"blocks.0.mixer.{n}"] is False, n
    assert decay["embed.weight"] is False  # embeddings, as before


def test_fsdp_config_wraps_every_backbone_and_each_block():
    cfg = compose("train", ["trainer=fsdp", "run_dir=/tmp/unused"])
    from hydra.utils import instantiate

    strategy = instantiate(cfg.trainer.strategy)  # the whole strategy builds (no GPU needed until setup)
    policy = strategy.kwargs["auto_wrap_policy"]
    for name, bb in backbones().items():
        wrapped = {m for m in bb.modules() if policy(module=m, recurse=False, nonwrapped_numel=0)}
        assert wrapped == {bb, *bb.blocks}, name  # the backbone (so its EMA copy too) and each block
        assert all(isinstance(b, Block | MambaBlock) for b in bb.blocks)


def test_unwrapped_backbone_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match=r"BiMamba was not wrapped as its own FSDP unit.*backbone_wrap_policy"):
        sd.check_fsdp_units(backbones()["bimamba"])


def test_clipping_under_fsdp_goes_through_the_root(monkeypatch):
    module = DiffusionLM(backbones()["transformer"], TOK)
    calls = []
    root = SimpleNamespace(clip_grad_norm_=lambda v: calls.append(("root", v)))
    monkeypatch.setattr(module, "clip_gradients", lambda opt, gradient_clip_val, gradient_clip_algorithm:
                        calls.append(("lightning", gradient_clip_val, gradient_clip_algorithm)))
    monkeypatch.setattr(sd, "fsdp_root", lambda trainer: trainer.strategy.model)
    attach_trainer(module, root)
    module.configure_gradient_clipping(None, 1.0, None)  # None = norm, as Lightning passes it by default
    module.configure_gradient_clipping(None, 0.5, "norm")
    module.configure_gradient_clipping(None, 0.5, "value")  # elementwise: Lightning's own path is right
    attach_trainer(module, None)  # not under FSDP
    module.configure_gradient_clipping(None, 1.0, None)
    assert calls == [("root", 1.0), ("root", 0.5), ("lightning", 0.5, "value"), ("lightning", 1.0, None)]


def test_ema_update_refuses_misaligned_parameters():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = nn.Parameter(b.weight.detach().flatten())
    with pytest.raises(RuntimeError, match="do not line up"):
        sd.ema_update(a, b, 0.9)
    c = nn.Linear(4, 4)
    before = c.weight.detach().clone()
    sd.ema_update(c, a, 0.75)
    torch.testing.assert_close(c.weight, 0.75 * before + 0.25 * a.weight.detach())  # float lerp: default tols


def test_lightning_forwards_set_epoch_through_the_distributed_wrapper():
    # pyproject's floor lightning>=2.6.1 is the release with this fix; before it every DDP epoch replayed epoch 0
    wrapped = DistributedSamplerWrapper(EpochSampler(8), num_replicas=2, rank=0, shuffle=False)
    wrapped.set_epoch(1)
    assert set(wrapped) <= set(range(8, 16)) and len(list(wrapped)) == 4


def test_data_prepared_once_and_index_read_by_every_rank(tmp_path, monkeypatch):
    import seqdiff.dna.windows as windows

    kw = dict(genome=None, fasta=FASTA, bed=BED, cache_dir=tmp_path, window=64, batch_size=4,
              train_windows_per_epoch=16, max_eval_windows=4)
    dm = GenomeDataModule(TOK, **kw)
    assert dm.prepare_data_per_node is False  # global rank 0 only, not local rank 0 of every node
    dm.prepare_data()
    assert len(list(tmp_path.glob("tiles-*.npz"))) == 3  # one good-tile index per split
    assert not list(tmp_path.glob("*.tmp"))

    def rescan(*a, **k):
        raise AssertionError("a rank rescanned its split instead of reading the index")

    monkeypatch.setattr(windows, "_scan_tiles", rescan)
    other_rank = GenomeDataModule(TOK, **kw)
    other_rank.setup("fit")
    other_rank.setup("test")
    assert len(other_rank.datasets["train"]) == 16 and len(other_rank.datasets["test"]) > 0


def test_failed_cache_build_removes_only_its_own_temp_files(tmp_path):
    from seqdiff.dna.genome import Genome

    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nACXT\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    other = cache / ".a.u8.other-process.tmp"  # another node building into the same shared directory
    other.write_bytes(b"AC")
    with pytest.raises(ValueError, match="bad.fa:4"):
        Genome(bad, cache, progress=False)
    assert other.read_bytes() == b"AC"
    assert [p.name for p in cache.glob("*.tmp")] == [other.name]  # this build's own temp files are gone
    assert not (cache / "index.json").exists()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_loaders_pin_memory_only_for_cuda(tmp_path, device):
    dm = GenomeDataModule(TOK, genome=None, fasta=FASTA, bed=BED, cache_dir=tmp_path, window=64, batch_size=4,
                          train_windows_per_epoch=8, max_eval_windows=2)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), current_epoch=0,
                                 world_size=1, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
                                     batch_progress=SimpleNamespace(current=SimpleNamespace(processed=0)))))
    assert dm.val_dataloader().pin_memory is (device == "cuda")
    assert dm.train_dataloader().pin_memory is (device == "cuda")


@pytest.mark.slow
def test_fsdp_cpu_two_ranks_bimamba_trains_and_saves_a_loadable_checkpoint(tmp_path):
    """`trainer=fsdp` with a BiMamba on 2 gloo processes (CPU): before these fixes this crashed at the first step
    (norm clipping), had weight decay off (flat 1-D shards), and could not update the EMA (no wrap policy for
    Mamba). ~30 s wall, ~8 s CPU."""
    over = [
        "data.genome=null", f"++data.fasta={FASTA}", f"++data.bed={BED}", f"++data.cache_dir={tmp_path / 'cache'}",
        "data.window=64", "data.batch_size=4", "data.max_eval_windows=4", "model=bimamba", "model.d_model=16",
        "model.n_layers=2", "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true",  # Lightning's FSDP bf16-mixed autocasts for CUDA only
        "trainer.strategy._target_=helpers.distributed.CPUFSDPStrategy", "trainer.max_steps=6",
        "trainer.val_check_interval=3", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
        "++trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=3",
        "+callbacks.probe._target_=helpers.distributed.ParamGroupProbe", f"+callbacks.probe.out={tmp_path / 'probe'}",
        "run_test=false", f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *over], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    probes = [json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["groups"] == probes[1]["groups"]
    for p in probes:
        assert p["ndims"] == [1] and p["backbone_fsdp"] and p["ema_fsdp"]  # flat shards; two FSDP units
        decayed, plain = set(p["groups"]["0.01"]), set(p["groups"]["0.0"])
        assert {"blocks.0.mixer.in_proj.weight", "blocks.1.mixer.x_proj", "head.weight"} <= decayed
        assert {"blocks.0.mixer.A_log", "blocks.0.mixer.D", "embed.weight", "head.bias"} <= plain
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and torch.isfinite(torch.tensor(metrics["val/bpb"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    model = seqdiff.load(ckpt)  # state_dict_type=full: one ordinary checkpoint, readable without Lightning
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    moved = max(float((state["ema." + k[len("backbone."):]] - v).abs().max()) for k, v in state.items()
                if k.startswith("backbone."))
    assert isinstance(model.backbone, BiMamba) and moved > 0  # the EMA was updated, shard by shard

"""Training, config groups, checkpoints and the three DNA CLIs, on the real chr20 fixture."""

import inspect
import json
import math
from pathlib import Path

import pytest
import torch
from Bio import SeqIO
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

import seqdiff
from seqdiff.checkpoint import CheckpointError, check_tokenizer
from seqdiff.diffusion import DiffusionLM
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.noise import LogLinearSchedule
from seqdiff.train import build_backbone, build_trainer

from helpers import CHR20, ROOT, TINY_TRAIN_OVERRIDES, compose, run_script

# Every config group and the command config it belongs to (a new group must be added here, see below).
GROUPS = {"benchmark": "benchmark", "callbacks": "train", "data": "train", "experiment": "train", "guide": "design",
          "logger": "train", "model": "train", "noise": "train", "objective": "train", "profile": "finetune",
          "sampler": "design", "sweep": "sweep", "task": "finetune", "tokenizer": "train", "trainer": "train"}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml"))


def _targets(node) -> list[dict]:
    """Every dict with a `_target_` inside a config node."""
    if isinstance(node, dict):
        return ([node] if "_target_" in node else []) + [d for v in node.values() for d in _targets(v)]
    if isinstance(node, list):
        return [d for v in node for d in _targets(v)]
    return []


def test_every_config_group_is_tested():
    assert sorted(GROUPS) == sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_config_group_composes_and_instantiates(group, option, tmp_path):
    """Each option composes into its command's config; every `_target_` in it exists and accepts every key
    given to it (no YAML key the code ignores); the cheap ones are built and used."""
    run_dir = tmp_path if GROUPS[group] in ("train", "finetune") else None
    cfg = compose(GROUPS[group], [f"{group}={option}"], run_dir=run_dir)
    node = OmegaConf.to_container(cfg if group in ("experiment", "profile", "sweep") else cfg[group])
    for spec in _targets(node):
        params = inspect.signature(get_object(spec["_target_"])).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in spec if not k.startswith("_") and k not in params]
        assert takes_any or not unknown, f"{group}={option}: {spec['_target_']} does not take {unknown}"
    if GROUPS[group] != "train":
        if group == "sampler":
            sampler = instantiate(cfg.sampler, schedule=LogLinearSchedule())
            ts = sampler.timesteps()
            assert float(ts[0]) == 1.0 and float(ts[-1]) == 0.0
        elif group == "benchmark":
            assert cfg.benchmark.name == option and cfg.benchmark.generation.samplers
        elif group == "profile":
            assert cfg.seeds
        elif group == "task":
            assert cfg.task._target_.startswith("seqdiff.dna.downstream")
        elif group == "guide":
            assert cfg.guide._target_.startswith("seqdiff.sampling.guidance.")
        elif group == "sweep":  # every point's overrides compose into a training config, as the sweep runs them
            assert cfg.points and cfg.budget_seconds > 0
            for point in cfg.points.values():
                assert compose("train", [*cfg.base, *point], run_dir=tmp_path).model._target_
        return
    tok = instantiate(cfg.tokenizer)  # fitted tokenizers (BPE, table) have no vocabulary until fit
    assert tok.config()["_target_"] == cfg.tokenizer._target_
    if group == "model":
        backbone, init = build_backbone(cfg.model, NucleotideTokenizer(), 64)
        x = torch.randint(0, 4, (2, 64))
        want = (2, backbone.num_classes) if hasattr(backbone, "classify") else (2, 64, backbone.vocab_size)
        assert backbone(x, torch.rand(2)).shape == want  # a noisy classifier (model=classifier) gives class logits
    elif group in ("noise",):
        s = instantiate(cfg.noise)
        assert 0 < float(s.alpha(torch.tensor(0.5))) < 1
    elif group in ("trainer",) and option.startswith(("cpu", "ddp_cpu")):
        assert build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    elif group == "callbacks":
        assert all(instantiate(c) is not None for c in cfg.callbacks.values())
    elif group == "data" and cfg.data._target_.endswith("GenomeDataModule"):
        dm = instantiate(cfg.data, tokenizer=tok)  # lazy: the genome is opened at setup()
        assert dm.window > 0


def test_unknown_config_key_is_rejected(tmp_path):
    with pytest.raises(Exception, match="not in struct|Could not override"):
        compose("train", ["model.no_such_key=3"], run_dir=tmp_path)


def test_loss_finite_and_falling_when_overfitting_real_dna():
    from seqdiff.diffusion import mdlm_nelbo
    from seqdiff.dna.windows import fasta_windows
    from seqdiff.noise import LogLinearSchedule

    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    ds = fasta_windows(CHR20, tok, 128)
    x0 = torch.stack([ds[i]["x0"] for i in range(4)])  # (4, 128) real chr20 windows
    backbone, _ = build_backbone(compose("train", ["model.d_model=64", "model.n_layers=2"]).model, tok, 128)
    module = DiffusionLM(backbone, tok, ema_decay=0)
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-2)

    def fixed_nelbo() -> float:  # same t grid and masks every time, so the comparison is noise-free
        g = torch.Generator().manual_seed(123)
        t = torch.linspace(0.05, 0.95, 16).repeat_interleave(4)
        with torch.no_grad():
            nats = mdlm_nelbo(backbone, x0.repeat(16, 1), LogLinearSchedule(), t, tok.mask_id, generator=g)
            return nats.mean().item()

    before = fixed_nelbo()
    for _ in range(120):
        loss, _ = module._mean_nats(backbone, x0)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_nelbo()
    assert after < 0.85 * before, (before, after)


def test_train_writes_checkpoint_and_metrics_and_load_roundtrips(tiny_checkpoint):
    run_dir = tiny_checkpoint.parent.parent
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 13
    # 13 is not a multiple of the checkpoint interval (6): last.ckpt must still hold the final step
    assert torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)["global_step"] == 13
    assert math.isfinite(metrics["test/bpb"]) and 1.0 < metrics["test/bpb"] < 4.0
    model = seqdiff.load(tiny_checkpoint)
    assert model.objective == "mdlm" and model.window == 128
    assert model.tokenizer.config() == NucleotideTokenizer().config()
    assert not model.backbone.training
    # EMA weights are what load() returns, and they differ from the raw weights after training
    raw = seqdiff.load(tiny_checkpoint, use_ema=False)
    diffs = [(a - b).abs().max() for a, b in zip(model.backbone.parameters(), raw.backbone.parameters(), strict=True)]
    assert max(diffs) > 0


def test_tokenizer_mismatch_is_a_clear_error(tiny_checkpoint):
    model = seqdiff.load(tiny_checkpoint)
    check_tokenizer(model, NucleotideTokenizer())
    with pytest.raises(CheckpointError, match="tokenizer mismatch"):
        check_tokenizer(model, KmerTokenizer(3), "task data")


def test_load_rejects_non_checkpoint(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        seqdiff.load(bad)
    with pytest.raises(CheckpointError, match="not found"):
        seqdiff.load(tmp_path / "missing.ckpt")


def test_sample_cli_semi_autoregressive_fasta(tiny_checkpoint, tmp_path):
    out = tmp_path / "s.fasta"
    r = run_script("sample.py", f"checkpoint={tiny_checkpoint}", "num_samples=3", "length=300", f"out={out}",
                   "steps=16", "progress=false")
    assert r.returncode == 0, r.stderr
    recs = list(SeqIO.parse(out, "fasta"))
    assert len(recs) == 3 and all(len(r.seq) == 300 for r in recs)  # 300 > window 128: semi-AR
    assert all(set(str(r.seq)) <= set("ACGTN") for r in recs)


def test_evaluate_cli_split_and_fasta(tiny_checkpoint, tmp_path):
    out = tmp_path / "e.json"
    r = run_script("evaluate.py", f"checkpoint={tiny_checkpoint}", "split=test", "max_windows=8",
                   "timestep_samples=2", f"out={out}")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert 1.0 < res["bits_per_base"] < 4.0 and res["windows"] == 8 and res["stderr"] > 0
    assert json.loads(r.stdout.strip().splitlines()[-1])["bits_per_base"] == res["bits_per_base"]
    r = run_script("evaluate.py", f"checkpoint={tiny_checkpoint}", f"fasta={CHR20}", "max_windows=4",
                   "timestep_samples=1", f"out={tmp_path / 'f.json'}")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "f.json").read_text())["windows"] == 4


def test_missing_genome_names_the_fetch_command(tmp_path):
    r = run_script("train.py", "data=hg38", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2
    assert "scripts/fetch_genome.py hg38" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_fasta_for_evaluate_is_one_clear_line(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGTACGT\nACGJACGT\n")
    out = tmp_path / "never.json"
    r = run_script("evaluate.py", f"checkpoint={tiny_checkpoint}", f"fasta={bad}", f"out={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(bad.name) in r.stderr
    assert not out.exists()


def test_window_longer_than_every_chromosome_is_a_clear_error(tmp_path):
    overrides = [o for o in TINY_TRAIN_OVERRIDES if not o.startswith("data.window")] + ["data.window=400000"]
    r = run_script("train.py", *overrides, f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "window" in r.stderr


def test_checked_in_paths_exist():
    assert CHR20.is_file() and Path(ROOT / "genomes" / "catalogue.yaml").is_file()

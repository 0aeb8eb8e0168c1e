"""Families end to end on real data: train (uniform noise, SEDD, class-conditional, noisy classifier), load,
score, sample, guided design through scripts/design.py's function; the benchmark scripts on tiny settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import seqdiff
from seqdiff.dna.design import design
from seqdiff.dna.labeled import LabeledDataModule, stratified_split
from seqdiff.dna.spec import Design
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.noise.processes import AbsorbingProcess, UniformProcess
from seqdiff.sampling import sample
from seqdiff.sampling.families import FamilySampler
from seqdiff.train import train

from helpers import CHR20, ROOT, TINY_TRAIN_OVERRIDES, compose

SMALL = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_cond=32"]
SPLICE = ["trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
          "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
          "callbacks.checkpoint.every_n_train_steps=4", "run_test=false", *SMALL]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints: UDLM on the chr20 fixture, the splice CFG denoiser and classifiers (SEDD's checkpoints
    take the same path: test_families_sampling and test_families_elbo cover its maths and sampler)."""
    out = {}
    for name in ("udlm",):
        d = tmp_path_factory.mktemp(name)
        train(compose("train", TINY_TRAIN_OVERRIDES + [f"objective={name}", "model.time_conditioning=true",
                                                 "trainer.max_steps=4", "run_test=false"], run_dir=d))
        out[name] = d / "checkpoints" / "last.ckpt"
    for name in ("splice_cfg", "splice_classifier", "splice_classifier_uniform"):
        d = tmp_path_factory.mktemp(name)
        train(compose("train", [f"experiment={name}", *SPLICE], run_dir=d))
        out[name] = d / "checkpoints" / "last.ckpt"
    return out


def test_family_checkpoints_load_score_and_sample(runs):
    for name, process in (("udlm", UniformProcess),):
        m = seqdiff.load(runs[name])
        assert m.objective == "family" and m.family.name == name and isinstance(m.family.process, process)
        x0 = torch.tensor([m.tokenizer.encode("ACGTNACGTTTGACCA" * 8)])  # 128 tokens = the window
        res = evaluate_likelihood(m.backbone, m.tokenizer, [x0], objective=m.objective, schedule=m.schedule,
                                  timestep_samples=2, progress=False, family=m.family)
        assert math.isfinite(res.bits_per_base) and res.bits_per_base > 0.5  # untrained SEDD scores: far above 2
        cons = Design(200).flanks("ACGT", "TTGA").compile().constraints(m.tokenizer)  # > window: semi-AR
        out = sample(m.backbone, m.mask_id, 2, 200, FamilySampler(m.family, 4), constraints=cons,
                     generator=torch.Generator().manual_seed(0), stride=64)
        assert cons.satisfied(out.tokens).all()
    m = seqdiff.load(runs["splice_cfg"])
    assert m.classes == ["ei", "ie", "n"] and isinstance(m.family.process, AbsorbingProcess)
    clf = seqdiff.load(runs["splice_classifier_uniform"])
    assert clf.objective == "classifier" and isinstance(clf.process, UniformProcess) and clf.classes == m.classes


def _design(runs, tmp_path, *overrides):
    cfg = compose("design", [f"checkpoint={runs['splice_cfg']}", f"out={tmp_path / 'd.fasta'}", "length=60",
                             "left_flank=ACGTACGT", "right_flank=TTGGCCAA", "template=NNNNNNNNNNNNNNNNNNNNNNNNNNNNRYNN",
                             "num_samples=4", "batch_size=2", "sampler.num_steps=6", "nelbo_samples=1", *overrides])
    return design(cfg)


@pytest.mark.parametrize("guide", ["cfg", "classifier", "classifier_exact"])
def test_guided_design_cli_keeps_every_constraint(runs, tmp_path, guide):
    extra = [] if guide == "cfg" else [f"guide.checkpoint={runs['splice_classifier']}"]
    if guide == "classifier_exact":
        extra.append("guide.mode=exact")
    summary = _design(runs, tmp_path, f"guide={guide.split('_')[0]}", "class=ie", "guidance_scale=3",
                      "guidance_interval=[0.3,1.0]", *extra)
    assert summary["satisfied"] == 1.0 and summary["class"] == "ie" and summary["guidance_scale"] == 3.0
    assert summary["guidance_interval"] == [0.3, 1.0]
    seqs = (tmp_path / "d.fasta").read_text().split("\n")[1::2]
    assert all(s.startswith("ACGTACGT") and s.endswith("TTGGCCAA") and s[28] in "AG" and s[29] in "CT"
               for s in seqs if s)


@pytest.mark.parametrize("overrides,match", [
    (["guide=cfg"], "needs class="),
    (["guide=cfg", "class=xx"], "unknown class 'xx'"),
    (["guide=cfg", "class=ei", "sampler=remasking"], "works only for unguided MDLM"),
    (["guide=cfg", "class=ei", "guidance_interval=[0.8,0.2]"], "guidance interval must be"),
    (["guide=classifier", "class=ei", "guide.checkpoint=UNIFORM"], "trained on UniformProcess noise"),
])
def test_guided_design_errors_are_clear(runs, tmp_path, overrides, match):
    overrides = [o.replace("UNIFORM", str(runs["splice_classifier_uniform"])) for o in overrides]
    with pytest.raises(ValueError, match=match):
        _design(runs, tmp_path, *overrides)


def test_label_dropout_and_labelled_datamodule(runs):
    from seqdiff.diffusion.family_lightning import FamilyLM
    from seqdiff.dna.downstream.tasks import splice_task

    m = seqdiff.load(runs["splice_cfg"])
    cfg = OmegaConf.create(m.config["objective"])
    from hydra.utils import instantiate

    lm = instantiate(cfg, backbone=m.backbone, tokenizer=m.tokenizer, label_dropout=1.0)
    assert isinstance(lm, FamilyLM) and lm.conditional
    lm._labels = torch.tensor([0, 1, 2])
    assert torch.equal(lm._train_labels(), torch.full((3,), 3))  # all dropped to the "no label" class
    lm.label_dropout = 0.0
    assert torch.equal(lm._train_labels(), torch.tensor([0, 1, 2]))
    dm = LabeledDataModule(m.tokenizer, splice_task(str(ROOT / "data_cache" / "splice")), val_fraction=0.1)
    dm.setup()
    assert dm.window == 60 and dm.classes == ["ei", "ie", "n"]
    assert len(dm.datasets["train"]) + len(dm.datasets["valid"]) == 2000 and len(dm.datasets["test"]) == 1186
    batch = next(iter(dm.train_dataloader()))
    assert batch["x0"].shape == (64, 60) and batch["y"].max() <= 2
    tr, va = stratified_split([0] * 10 + [1] * 4, 0.25, seed=0)
    assert sorted(tr + va) == list(range(14)) and len(va) == 3  # round(2.5) = 2 of class 0, 1 of class 1


def test_remasking_benchmark_runs_on_the_oracle(tmp_path):
    from seqdiff.benchmarks.benchmark_remasking import benchmark_remasking

    cfg = compose("benchmark_remasking", [f"+data.fasta={CHR20}", "data.genome=null", "+data.gap=1000",
                                          "+data.window=64", "oracle_order=2", "length=48", "num_samples=6",
                                          "batch_size=6", "reference_windows=8", "steps=[2]",
                                          f"out={tmp_path / 'r'}"])
    out = benchmark_remasking(cfg)
    sets = json.loads((tmp_path / "r.json").read_text())["sets"]
    assert "ancestral @ 2" in sets and "llada_confidence @ 2" in sets and out["denoiser"].startswith("MarkovOracle")
    assert all(0 <= s["gc"] <= 1 and s["js_k3"] >= 0 for s in sets.values())
    assert (tmp_path / "r.md").read_text().count("\n") >= len(sets) + 2


@pytest.mark.slow
def test_guidance_benchmark_end_to_end(runs, tmp_path):
    from seqdiff.benchmarks.benchmark_guidance import benchmark_guidance

    cfg = compose("benchmark_guidance", [
        f"models.absorbing.denoiser={runs['splice_cfg']}", f"models.absorbing.classifier={runs['splice_classifier']}",
        "models.uniform=null", "cfg_scales=[2.0]", "classifier_scales=[3.0]", "steps=3", "num_samples=4",
        "batch_size=2", "judge.trainer.max_epochs=1", "+judge.trainer.limit_train_batches=2",
        f"work_dir={tmp_path / 'w'}", f"out={tmp_path / 'g'}"])
    out = benchmark_guidance(cfg)
    rows = out["rows"]
    assert len(rows) == 3 * 3  # unguided, cfg, classifier x 3 classes
    assert all(r["satisfied"] == 1.0 and 0 <= r["judged"] <= 1 for r in rows)
    assert 0 < out["judge"]["acc"] <= 1 and (tmp_path / "g.md").is_file()

    # replicates and guidance intervals: one row per seed x setting, a summary row per setting with the means
    cfg = compose("benchmark_guidance", [
        f"models.absorbing.denoiser={runs['splice_cfg']}", "models.absorbing.classifier=null", "models.uniform=null",
        "cfg_scales=[2.0]", "cfg_intervals=[[0.0,1.0],[0.5,1.0]]", "seeds=[0,1]", "steps=3", "num_samples=4",
        "batch_size=2", "judge.trainer.max_epochs=1", "+judge.trainer.limit_train_batches=2",
        f"work_dir={tmp_path / 'w2'}", f"out={tmp_path / 'g2'}"])
    out = benchmark_guidance(cfg)
    assert len(out["rows"]) == 2 * 3 * 3 and len(out["summary"]) == 3 * 3  # (unguided + 2 intervals) x 3 classes
    s = next(r for r in out["summary"] if r["method"] == "cfg" and r["interval"] == [0.5, 1.0] and r["class"] == "ei")
    per_seed = [r["judged"] for r in out["rows"] if r["method"] == "cfg" and r["interval"] == [0.5, 1.0]
                and r["class"] == "ei"]
    assert s["n"] == 2 and s["judged"] == pytest.approx(sum(per_seed) / 2)
    assert "Mean ± std over 2 replicates" in (tmp_path / "g2.md").read_text()


@pytest.mark.slow
def test_compare_families_end_to_end(tmp_path):
    """One command, four families trained in subprocesses, scored on the same windows."""
    from seqdiff.benchmarks.compare_families import compare_families

    common = [*TINY_TRAIN_OVERRIDES, "data.window=64", "model.time_conditioning=true", "trainer.max_steps=2",
              "trainer.val_check_interval=2", "callbacks.checkpoint.every_n_train_steps=2", "run_test=false"]
    cfg = compose("compare_families", [f"common=[{','.join(repr(c) for c in common)}]", f"run_root={tmp_path / 'runs'}",
                                       "max_eval_windows=4", "timestep_samples=1", "batch_size=4", "steps=[2]",
                                       "num_samples=4", "budget_minutes=2", f"out={tmp_path / 'f'}"])
    out = compare_families(cfg)
    assert set(out["families"]) == {"mdlm", "udlm", "sedd", "sedd_uniform"}
    for r in out["families"].values():
        assert math.isfinite(r["test_bits_per_base"]) and r["samples"][2]["network_calls"] <= 2
    assert "sedd_uniform" in (tmp_path / "f.md").read_text()

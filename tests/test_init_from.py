"""`init_from=PATH`: a run starts from another checkpoint's backbone (e.g. an AR run's for MDLM), or fails clearly."""

from __future__ import annotations

import json

import pytest
import torch

import seqdiff
from seqdiff.checkpoint import CheckpointError
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.train import build_backbone, init_backbone_from, train

from helpers import TINY_MODEL, TINY_TRAIN_OVERRIDES, compose


@pytest.fixture(scope="module")
def ar_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ar_run")
    train(compose("train", [*TINY_TRAIN_OVERRIDES, "model=transformer_ar", "run_test=false"], run_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_mdlm_backbone_starts_from_the_ar_ema_weights(ar_checkpoint):
    source = seqdiff.load(ar_checkpoint)  # EMA weights
    assert source.objective == "ar"
    tok = NucleotideTokenizer()
    cfg = compose("train", TINY_TRAIN_OVERRIDES)
    backbone, _ = build_backbone(cfg.model, tok, 128)
    assert not backbone.causal
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    n = init_backbone_from(backbone, tok, str(ar_checkpoint))
    # the source was trained on a genome with the n-gram prior (ngram_context: auto); this backbone was built
    # without data, so it has none: the prior's tensors are the only ones not copied
    theirs = {k: v for k, v in source.backbone.state_dict().items() if not k.startswith("ngram")}
    assert len(theirs) == len(source.backbone.state_dict()) - 3 and backbone.ngram is None
    assert n == len(theirs) > 0
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, theirs[k], rtol=0, atol=0)  # copied, not recomputed
    assert any(not torch.equal(before[k], theirs[k]) for k in theirs)
    assert not backbone.causal  # the weights are the AR model's, the attention stays bidirectional


def test_training_run_with_init_from_trains_and_records_it(ar_checkpoint, tmp_path):
    cfg = compose("train", [*TINY_TRAIN_OVERRIDES, f"init_from={ar_checkpoint}", "trainer.max_steps=3",
                            "run_test=false"], run_dir=tmp_path)
    metrics = train(cfg)
    assert metrics["global_step"] == 3
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 3
    model = seqdiff.load(tmp_path / "checkpoints" / "last.ckpt")
    assert model.objective == "mdlm" and model.config["init_from"] == str(ar_checkpoint)
    # the AR source's (causal) counts are not copied: this run counted its own training split, bidirectionally
    source = seqdiff.load(ar_checkpoint).backbone
    assert bool(model.backbone.ngram.fitted) and not model.backbone.ngram.causal and source.ngram.causal


def test_mismatched_shape_or_tokenizer_is_one_clear_error(ar_checkpoint):
    wider = compose("train", [*TINY_TRAIN_OVERRIDES, f"model.d_model={2 * TINY_MODEL['d_model']}"])
    backbone, _ = build_backbone(wider.model, NucleotideTokenizer(), 128)
    with pytest.raises(CheckpointError, match=r"init_from=.*embed.weight"):
        init_backbone_from(backbone, NucleotideTokenizer(), str(ar_checkpoint))
    kmer = KmerTokenizer(3)
    backbone, _ = build_backbone(compose("train", TINY_TRAIN_OVERRIDES).model, kmer, 128)
    with pytest.raises(CheckpointError, match="tokenizer mismatch"):
        init_backbone_from(backbone, kmer, str(ar_checkpoint))



def test_partial_init_keeps_the_new_tensors_fresh_and_copies_the_rest(ar_checkpoint):
    """A model with tensors the source lacks (here absolute position embeddings) is refused unless partial."""
    tok = NucleotideTokenizer()
    cfg = compose("train", [*TINY_TRAIN_OVERRIDES, "model.abs_positions=true"])
    backbone, _ = build_backbone(cfg.model, tok, 128)
    with pytest.raises(CheckpointError, match=r"missing \['pos.weight'\]"):
        init_backbone_from(backbone, tok, str(ar_checkpoint))
    fresh = backbone.pos.weight.detach().clone()
    n = init_backbone_from(backbone, tok, str(ar_checkpoint), partial=True)
    theirs = {k: v for k, v in seqdiff.load(ar_checkpoint).backbone.state_dict().items()
              if not k.startswith("ngram")}  # the source's n-gram prior (this backbone has none)
    assert n == len(theirs) == len(backbone.state_dict()) - 1
    assert torch.equal(backbone.pos.weight, fresh)
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in theirs.items())

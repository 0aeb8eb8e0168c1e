"""Checkpoints written before the domain layout (tokenizer and data `_target_`s under seqdiff.tokenizers /
seqdiff.data) still load, with every stored `_target_` mapped to where the class lives now."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class

import seqdiff
from seqdiff.checkpoint import MOVED_TARGETS, current_target
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer

from helpers import write_checkpoint


@pytest.mark.parametrize("tokenizer,data,cls,vocab", [
    ({"_target_": "seqdiff.tokenizers.NucleotideTokenizer"},
     {"_target_": "seqdiff.data.GenomeDataModule", "genome": "grch37_chr20"}, "NucleotideTokenizer", 10),
    ({"_target_": "seqdiff.tokenizers.KmerTokenizer", "k": 2},
     {"_target_": "seqdiff.data.datamodule.GenomeDataModule"}, "KmerTokenizer", 35),
    ({"_target_": "seqdiff.tokenizers.nucleotide.KmerTokenizer", "k": 1},
     {"_target_": "seqdiff.data.GenomeDataModule"}, "KmerTokenizer", 10),
])
def test_checkpoint_from_before_the_move_loads(tmp_path, tokenizer, data, cls, vocab):
    tok = (KmerTokenizer(tokenizer["k"]) if "k" in tokenizer else NucleotideTokenizer())  # what it rebuilds to
    path = write_checkpoint(tmp_path / "old.ckpt", tok, max_len=16, data=data, tokenizer_config=tokenizer)
    m = seqdiff.load(path)
    assert type(m.tokenizer).__name__ == cls and type(m.tokenizer).__module__ == "seqdiff.dna.tokenizer"
    assert m.tokenizer.vocab_size == vocab and m.config["data"]["_target_"] == "seqdiff.dna.datamodule.GenomeDataModule"
    assert m.backbone(torch.zeros(1, 16, dtype=torch.long), torch.rand(1)).shape == (1, 16, vocab)


def test_every_moved_target_resolves():
    for old, new in MOVED_TARGETS.items():
        assert current_target(old) == new
        if new[new.rfind(".") + 1].isupper():  # a class: it must exist where the map says
            assert get_class(new).__name__ == new.rsplit(".", 1)[1]
    # module prefixes map their members; unrelated targets are left alone
    assert current_target("seqdiff.tokenizers.table.TableTokenizer") == "seqdiff.tables.tokenizer.TableTokenizer"
    assert current_target("seqdiff.tokenizers.code.CodeBPETokenizer") == "seqdiff.code.tokenizer.CodeBPETokenizer"
    assert current_target("seqdiff.data.code.CodeDataModule") == "seqdiff.code.data.CodeDataModule"
    assert current_target("seqdiff.backbones.Transformer") == "seqdiff.backbones.Transformer"
    for new in ("seqdiff.tables.tokenizer.TableTokenizer", "seqdiff.code.tokenizer.CodeBPETokenizer",
                "seqdiff.code.data.CodeDataModule", "seqdiff.tables.data.TableDataModule",
                "seqdiff.tables.adult.AdultDataModule", "seqdiff.benchmarks.timing.StepTimer"):
        assert get_class(new).__name__ == new.rsplit(".", 1)[1]

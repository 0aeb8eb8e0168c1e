"""Fine-tuning recipe options (LLRD, lr schedule, RC augmentation/prediction, pooling, early stopping, the
scikit-learn linear probe) and the bad-input errors that name file and row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_downstream import TRAINER, ctx, poly_task

from seqdiff.dna.downstream import BackboneEncoder, Context, DenoiserMethod, SequenceClassifier, labeled_task
from seqdiff.dna.downstream.classifier import lr_lambda, param_groups, reverse_complement_padded
from seqdiff.dna.downstream.encoders import MemoizedEncoder, masked_pool
from seqdiff.dna.downstream.protocol import encode_split, fit_and_test, sklearn_probe
from seqdiff.dna.tokenizer import NucleotideTokenizer

from helpers import tiny_transformer

TOK = NucleotideTokenizer()


def classifier(**kw) -> SequenceClassifier:
    torch.manual_seed(0)
    enc = BackboneEncoder(tiny_transformer(TOK.vocab_size, 32, n_layers=3), TOK.pad_id, kw.pop("pool", "mean"))
    return SequenceClassifier(enc, 2, TOK.pad_id, mask_id=TOK.mask_id, complement_ids=TOK.complement_ids, **kw)


def test_layerwise_lr_decay_gives_each_depth_its_lr():
    module = classifier(lr=1e-3, layer_decay=0.5)
    lr_of = {}
    for g in param_groups(module, 1e-3, 0.01, 0.5):
        for p in g["params"]:
            lr_of[id(p)] = g["lr"]
    bb = module.encoder.backbone
    assert lr_of[id(bb.embed.weight)] == pytest.approx(1e-3 * 0.5**4)  # embedding: depth 0 of n + 1 = 4
    for i, block in enumerate(bb.blocks):  # block i: lr * decay^(n - i)
        assert all(lr_of[id(p)] == pytest.approx(1e-3 * 0.5 ** (3 - i)) for p in block.parameters())
    assert all(lr_of[id(p)] == pytest.approx(1e-3) for p in module.head.parameters())
    assert len(lr_of) == sum(1 for _ in module.parameters())  # every parameter in exactly one group
    no_decay = {id(p) for g in param_groups(module, 1e-3, 0.01, 0.5) if g["weight_decay"] == 0 for p in g["params"]}
    assert id(module.head[1].bias) in no_decay and id(module.head[1].weight) not in no_decay


def test_lr_schedule_warmup_then_decay():
    f = lr_lambda(100, 0.1, "cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=1e-9) and f(99) < 0.01
    g = lr_lambda(100, 0.0, "linear")
    assert g(0) == 1.0 and g(50) == pytest.approx(0.5) and lr_lambda(10, 0.0, "constant")(9) == 1.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_lambda(10, 0.0, "step")


def test_reverse_complement_of_right_padded_rows():
    seqs = ["ACGTTGCA", "AACG", "GGGTTT"]
    x = torch.nn.utils.rnn.pad_sequence([torch.tensor(TOK.encode(s)) for s in seqs], batch_first=True,
                                        padding_value=TOK.pad_id)
    rc = reverse_complement_padded(x, x != TOK.pad_id, TOK.complement_ids)
    for row, s in zip(rc, seqs, strict=True):
        assert TOK.decode(row[: len(s)].tolist()) == TOK.decode(TOK.reverse_complement(torch.tensor(TOK.encode(s))))
        assert (row[len(s):] == TOK.pad_id).all()
    assert torch.equal(reverse_complement_padded(rc, rc != TOK.pad_id, TOK.complement_ids), x)


def test_rc_averaged_prediction_is_strand_invariant():
    module = classifier(rc_predict=True).eval()
    x = torch.tensor([TOK.encode("ACGTTGCAAGGCTAAC"), TOK.encode("GGGATTACAGATTACA")])
    with torch.no_grad():
        p, p_rc = module.probs(x), module.probs(TOK.reverse_complement(x))
        plain = module(x).softmax(-1)
    # the same two forward passes, summed in the other order: equal up to float addition rounding
    torch.testing.assert_close(p, p_rc, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(plain, module(TOK.reverse_complement(x)).softmax(-1), atol=1e-4)  # a real change


def test_input_masking_only_while_training():
    module = classifier(input_mask=1.0)
    seen = []
    module.encoder.backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    x = torch.tensor([TOK.encode("ACGTAC"), TOK.encode("TTTTAC")])
    module.training_step({"x": x, "y": torch.tensor([0, 1])}, 0)
    assert (seen[-1] == TOK.mask_id).all()
    module.probs(x)
    assert torch.equal(seen[-1], x)


def test_center_first_and_attention_pooling():
    h = torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert masked_pool(h, mask, "center").squeeze(-1).tolist() == [3.0, 8.0]  # offset len // 2 = 3 and 2
    assert masked_pool(h, mask, "first").squeeze(-1).tolist() == [0.0, 6.0]
    flipped = mask.flip(-1)  # Caduceus' reverse copies: real tokens at the end
    assert masked_pool(h, flipped, "first").squeeze(-1).tolist() == [0.0, 8.0]
    enc = BackboneEncoder(tiny_transformer(TOK.vocab_size, 32), TOK.pad_id, "attention", pool_heads=2)
    hh = torch.randn(2, 6, enc.attention.score.in_features)
    out = enc.attention(hh, mask)  # zero-initialised scores: every head is the masked mean
    assert out.shape == (2, 2 * hh.shape[-1])
    torch.testing.assert_close(out[:, : hh.shape[-1]], masked_pool(hh, mask, "mean"))


def test_frozen_attention_pooling_trains_on_cached_hidden_states():
    torch.manual_seed(0)
    inner = BackboneEncoder(tiny_transformer(TOK.vocab_size, 32), TOK.pad_id, "attention")
    module = SequenceClassifier(MemoizedEncoder(inner), 2, TOK.pad_id, freeze=True)
    x = torch.tensor([TOK.encode("ACGTAC"), TOK.encode("TTTTAC")])
    module(x).sum().backward()
    assert all(p.grad is None for p in inner.backbone.parameters())
    assert inner.attention.pos_bias.grad is not None and len(module.encoder._cache) == 2


class _Scripted(SequenceClassifier):
    """val/acc follows SCRIPT per epoch; a parameter records the epoch its weights were trained in."""

    SCRIPT = [0.5, 0.9, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1]

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.marker = torch.nn.Parameter(torch.tensor(-1.0), requires_grad=False)

    def on_train_epoch_start(self) -> None:
        self.marker.data.fill_(float(self.current_epoch))

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.reset()
        self.log("val/acc", self.SCRIPT[self.current_epoch])

    def on_test_epoch_end(self) -> None:
        self.test_metrics.reset()
        self.log("test/acc", self.marker.detach().clone())


def test_early_stopping_tests_the_best_epochs_weights(tmp_path):
    enc = BackboneEncoder(tiny_transformer(TOK.vocab_size, 64), TOK.pad_id)
    module = _Scripted(enc, 2, TOK.pad_id)
    c = Context(TOK, {**TRAINER, "max_epochs": 8}, batch_size=64, val_fraction=0.2, run_dir=tmp_path,
                keep_checkpoints=False, patience=2)
    result = fit_and_test(module, poly_task(20), 0, c, enc.window, "scripted")
    assert result["best_epoch"] == 1 and result["val_acc"] == pytest.approx(0.9)
    assert result["epochs"] == 4  # epochs 2 and 3 did not improve: stopped after epoch 3
    assert result["acc"] == 1.0  # the test ran on epoch 1's weights, not the last epoch's (3)


def test_sklearn_probe_standardises_and_picks_C(tmp_path):
    torch.manual_seed(0)
    enc = MemoizedEncoder(BackboneEncoder(tiny_transformer(TOK.vocab_size, 64), TOK.pad_id, "mean"))
    result = sklearn_probe(enc, poly_task(), 0, ctx(tmp_path), Cs=(0.01, 1.0))
    assert result["acc"] > 0.9 and result["C"] in (0.01, 1.0) and 0.0 <= result["val_acc"] <= 1.0
    with pytest.raises(ValueError, match="parameter-free pool"):
        DenoiserMethod(checkpoint="x", freeze=True, pool="attention")


# ---- bad input: one line naming file and row ----

def _csv(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("sequence,label\n" + "".join(f"{s},{y}\n" for s, y in rows))
    return str(path)


def test_single_class_file_is_named(tmp_path):
    tr = _csv(tmp_path / "tr.csv", [("ACGT", "a"), ("ACGA", "a")])
    te = _csv(tmp_path / "te.csv", [("ACGT", "a")])
    with pytest.raises(ValueError, match=r"tr\.csv: the training set has a single class 'a'"):
        labeled_task(tr, te)


def test_test_label_missing_from_train_names_file_and_line(tmp_path):
    tr = _csv(tmp_path / "tr.csv", [("ACGT", "a"), ("ACGA", "b")])
    te = _csv(tmp_path / "te.csv", [("ACGT", "a"), ("ACGT", "b"), ("ACGA", "c")])
    with pytest.raises(ValueError, match=r"te\.csv line 4: test labels \['c'\] never occur in train"):
        labeled_task(tr, te)


def test_non_iupac_character_names_file_and_row(tmp_path):
    tr = _csv(tmp_path / "tr.csv", [("ACGT", "a"), ("ACGA", "b"), ("ACXA", "b")])
    with pytest.raises(ValueError, match=r"tr\.csv line 4: invalid nucleotide 'X' at position 2"):
        labeled_task(tr, _csv(tmp_path / "te.csv", [("ACGT", "a")]))
    fa = tmp_path / "te.fa"
    fa.write_text(">s1 label=a\nACGT\n>s2 label=b\nAC-T\n")
    with pytest.raises(ValueError, match=r"te\.fa record #1 \('s2'\): invalid nucleotide '-'"):
        labeled_task(_csv(tmp_path / "ok.csv", [("A", "a"), ("C", "b")]), str(fa))


def test_long_sequence_error_names_file_and_row(tmp_path):
    rows = [("ACGT" * 2, "a"), ("ACGA" * 2, "b")] * 4 + [("ACGT" * 10, "a")]
    task = labeled_task(_csv(tmp_path / "tr.csv", rows), _csv(tmp_path / "te.csv", [("ACGT", "a")]))
    c = Context(TOK, TRAINER, long_sequences="error", val_fraction=0.3, run_dir=tmp_path)
    with pytest.raises(ValueError, match=r"tr\.csv line 10: 40 tokens exceed the model window of 16 .*"
                                         "long_sequences=truncate"):
        encode_split(task, 0, c, 16)
    (xtr, _), (xva, _), _ = encode_split(task, 0, Context(TOK, TRAINER, val_fraction=0.3), 16)  # truncate
    assert max(len(x) for x in xtr + xva) == 16

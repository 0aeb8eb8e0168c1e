"""Downstream classifier, metrics, protocol and entry points (tiny models; real splice data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

from seqdiff.benchmarks.benchmark_downstream import benchmark_downstream, markdown_table
from seqdiff.checkpoint import CheckpointError
from seqdiff.dna.downstream import (
    BackboneEncoder,
    CNNEncoder,
    Context,
    DenoiserMethod,
    KmerLRMethod,
    SequenceClassifier,
    Task,
    score,
)
from seqdiff.dna.downstream.baselines import fit_kmer_lr, predict_proba
from seqdiff.dna.downstream.encoders import MemoizedEncoder
from seqdiff.dna.downstream.finetune import finetune
from seqdiff.dna.downstream.protocol import CNNMethod, fit_and_test
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer

from helpers import compose, tiny_transformer, write_checkpoint

TRAINER = {"_target_": "lightning.Trainer", "accelerator": "cpu", "devices": 1, "max_epochs": 1,
           "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
           "log_every_n_steps": 1}


def poly_task(n: int = 80, seed: int = 0) -> Task:
    """Mostly-A vs mostly-C sequences of varying length (15% of bases random), 2 classes."""
    rng = np.random.default_rng(seed)

    def make(base: str, k: int) -> list[str]:
        out = []
        for _ in range(k):
            s = np.array(list(base * int(rng.integers(20, 41))))
            noise = rng.random(len(s)) < 0.15
            s[noise] = rng.choice(list("ACGT"), noise.sum())
            out.append("".join(s))
        return out

    return Task("poly", make("A", n) + make("C", n), ["A"] * n + ["C"] * n, make("A", 40) + make("C", 40),
                ["A"] * 40 + ["C"] * 40)


def ctx(tmp_path: Path, **trainer) -> Context:
    return Context(NucleotideTokenizer(), {**TRAINER, **trainer}, batch_size=16, val_fraction=0.2,
                   run_dir=tmp_path, keep_checkpoints=False)


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    for C in (2, 3):
        y = rng.integers(0, C, 200)
        logits = rng.normal(size=(200, C)) + 1.5 * np.eye(C)[y]  # informative but imperfect
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        pred = probs.argmax(1)
        got = score(probs, y)
        assert got["acc"] == pytest.approx(accuracy_score(y, pred), abs=1e-6)
        assert got["mcc"] == pytest.approx(matthews_corrcoef(y, pred), abs=1e-5)
        assert got["f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-5)
        ref_auc = roc_auc_score(y, probs[:, 1]) if C == 2 else roc_auc_score(y, probs, multi_class="ovr")
        assert got["auroc"] == pytest.approx(ref_auc, abs=1e-4)


def test_head_learns_poly_a_vs_poly_c(tmp_path):
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    encoder = BackboneEncoder(tiny_transformer(tok.vocab_size, 64), tok.pad_id)
    module = SequenceClassifier(encoder, 2, tok.pad_id, lr=3e-3)
    result = fit_and_test(module, poly_task(), 0, ctx(tmp_path, max_epochs=4), encoder.window, "poly")
    assert result["acc"] > 0.99 and result["auroc"] > 0.99
    assert 0 <= result["best_epoch"] < 4 and not (tmp_path / "poly" / "seed0").exists()  # removed


def test_tiling_pools_over_windows():
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    enc = BackboneEncoder(tiny_transformer(tok.vocab_size, 8), tok.pad_id).eval()
    x = torch.tensor([tok.encode("ACGTACGTTTGGCCAA")])  # 16 tokens = 2 windows of 8
    with torch.no_grad():
        tiled = enc(x, torch.ones_like(x, dtype=torch.bool))
        halves = enc(x.view(2, 8), torch.ones(2, 8, dtype=torch.bool)).mean(0, keepdim=True)
        short = enc(x[:, :12], torch.ones(1, 12, dtype=torch.bool))  # a padded last tile is masked out
        padded = torch.cat([x[:, 8:12], torch.full((1, 4), tok.pad_id)], 1)
        manual = torch.cat([enc.hidden(x[:, :8])[0], enc.hidden(padded)[0, :, :4]], 1).mean(1)
    assert torch.allclose(tiled, halves, atol=1e-5) and torch.allclose(short, manual, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 10), n=st.integers(1, 30), width=st.integers(1, 12))
def test_window_index_is_centred_on_the_center_token(start, n, width):
    from seqdiff.dna.downstream.encoders import masked_pool, window_index

    L = start + n + 3
    mask = torch.zeros(1, L, dtype=torch.bool)
    mask[0, start:start + n] = True
    idx, inside = window_index(mask, width)
    h = torch.arange(L, dtype=torch.float32).view(1, L, 1)
    centre = int(masked_pool(h, mask, "center"))
    assert centre == start + n // 2  # the token at offset len // 2 from the first real one
    raw = centre - width // 2 + torch.arange(width)
    assert int(idx[0, width // 2]) == centre  # the window's middle is `center` pooling's token
    assert inside[0].tolist() == [start <= i < start + n for i in raw.tolist()]
    assert torch.equal(idx[0][inside[0]], raw[inside[0]])


def test_window_pool_concatenates_the_central_tokens_in_order():
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    enc = BackboneEncoder(tiny_transformer(tok.vocab_size, 16), tok.pad_id, pool="window", pool_width=4).eval()
    x = torch.tensor([tok.encode("ACGTACGTTT"), tok.encode("GGCCAA") + [tok.pad_id] * 4])
    mask = x != tok.pad_id
    with torch.no_grad():
        f, h = enc(x, mask), enc.hidden(x)[0]  # (B, 4 * D), (B, L, D)
    D = h.shape[-1]
    assert enc.out_features == f.shape[1] == 4 * D
    torch.testing.assert_close(f[0], h[0, 3:7].flatten())  # centre 5, window 3..6
    torch.testing.assert_close(f[1], h[1, 1:5].flatten())  # 6 real tokens: centre 3, window 1..4
    with pytest.raises(ValueError, match="pool_width must be in 1..16"):
        BackboneEncoder(tiny_transformer(tok.vocab_size, 16), tok.pad_id, pool="window", pool_width=17)
    long = torch.tensor([tok.encode("ACGT" * 5 + "TTGCA" * 4)])  # 40 tokens: tiles of 16, centre 20 in tile 2
    with torch.no_grad():
        f_long, tile2 = enc(long, torch.ones_like(long, dtype=torch.bool)), enc.hidden(long[:, 16:32])[0]
    torch.testing.assert_close(f_long[0], tile2[0, 2:6].flatten())  # positions 18..21, read across the tiles
    with pytest.raises(ValueError, match="long_sequences=truncate"):
        enc.pool_features(torch.zeros(2, 1, 20, D), torch.ones(2, 1, 20, dtype=torch.bool))  # two strands, tiled


def test_window_pool_aligns_reverse_complement_copies():
    """Caduceus's second copy is the reverse complement flipped along L: read mirrored, it lines up."""
    torch.manual_seed(0)
    enc = BackboneEncoder(tiny_transformer(7, 16), 5, pool="window", pool_width=3)
    mask = torch.tensor([[True] * 7 + [False] * 3])
    h1 = torch.randn(1, 10, 4)
    one = enc.pool_features(h1[None], mask[None])
    both = enc.pool_features(torch.stack([h1, h1.flip(1)]), torch.stack([mask, mask.flip(1)]))
    torch.testing.assert_close(one, both)
    torch.testing.assert_close(one, h1[0, 2:5].flatten()[None])


def test_caduceus_features_through_head_hook_are_strand_invariant():
    from seqdiff.backbones.caduceus import CaduceusPS

    tok = NucleotideTokenizer()
    torch.manual_seed(0)
    backbone = CaduceusPS(tok.vocab_size, 32, d_model=16, n_layers=1, complement_ids=tok.complement_ids.tolist())
    enc = BackboneEncoder(backbone, tok.pad_id).eval()
    x = torch.tensor([tok.encode("ACGTTGCAAGGCTTAACG")])
    mask = torch.ones_like(x, dtype=torch.bool)
    with torch.no_grad():
        f, f_rc = enc(x, mask), enc(tok.reverse_complement(x), mask)
    assert f.shape == (1, 8) and torch.allclose(f, f_rc, atol=1e-5)


def test_memoized_probe_features_and_frozen_backbone():
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    inner = BackboneEncoder(tiny_transformer(tok.vocab_size, 32), tok.pad_id)
    module = SequenceClassifier(MemoizedEncoder(inner), 2, tok.pad_id, freeze=True)
    x = torch.tensor([tok.encode("ACGTAC"), tok.encode("TTTTAC")])
    before = [p.clone() for p in inner.parameters()]
    loss = module(x).sum()
    loss.backward()
    assert all(p.grad is None for p in inner.parameters()) and len(module.encoder._cache) == 2
    module.eval()  # head dropout off
    # Cache hits hand back the stored feature tensors themselves (no recomputation), whatever the batch order.
    inner.forward = lambda *a: pytest.fail("a cached row reached the backbone again")
    feats = module.encoder(x, x != tok.pad_id)
    flipped = module.encoder(x.flip(0), x.flip(0) != tok.pad_id)
    assert torch.equal(feats, flipped.flip(0))  # exact: both are copies of the same cached tensors
    # The head runs a GEMM whose kernel may round differently by batch position (oneDNN/MKL on AMX), so the
    # logits agree to float32 rounding only: |logit| ~ 1, a 32-term dot product -> errors ~1e-6.
    torch.testing.assert_close(module(x), module(x.flip(0)).flip(0), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, inner.parameters(), strict=True))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_head_folds_the_sklearn_probe_into_the_linear_head(tmp_path, n_classes):
    """LP-FT: the head built from the probe gives the probe's probabilities on the raw (unscaled) features."""
    from seqdiff.dna.downstream.protocol import _features, _fit_probe, encode_split, probe_head

    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    task = poly_task(30)
    if n_classes == 3:  # a third class: mostly G
        task = Task("poly3", task.train_sequences + ["GGGGAGGGGCGG" * 3] * 20, task.train_labels + ["G"] * 20,
                    task.test_sequences, task.test_labels)
    encoder = BackboneEncoder(tiny_transformer(tok.vocab_size, 128), tok.pad_id, pool="mean")
    c = ctx(tmp_path)
    head = probe_head(encoder, task, 0, c, Cs=(0.1, 1.0))
    assert head["weight"].shape == (n_classes, encoder.out_features) and head["C"] in (0.1, 1.0)
    (xtr, ytr), (xva, yva), (xte, _) = encode_split(task, 0, c, encoder.window)
    pipe, C, val_acc = _fit_probe(_features(encoder, xtr, c), ytr, _features(encoder, xva, c), yva, (0.1, 1.0), 0)
    feats = _features(encoder, xte, c)
    logits = torch.as_tensor(feats, dtype=torch.float32) @ head["weight"].T + head["bias"]
    np.testing.assert_allclose(logits.softmax(-1).numpy(), pipe.predict_proba(feats), atol=1e-4)
    assert C == head["C"] and val_acc == head["val_acc"]
    # and the method fine-tunes from it, reporting the probe's choice
    method = DenoiserMethod(checkpoint=str(write_checkpoint(tmp_path / "tiny.ckpt", max_len=128)), pool="mean",
                            head_init="probe", Cs=(1.0,))
    out = method.run(task, 0, ctx(tmp_path, max_epochs=1))
    assert out["probe_C"] == 1.0 and 0 <= out["probe_val_acc"] <= 1 and 0 <= out["acc"] <= 1
    with pytest.raises(ValueError, match="head_init=probe needs a parameter-free pool"):
        DenoiserMethod(pool="attention", head_init="probe")
    with pytest.raises(ValueError, match="head_init must be one of"):
        DenoiserMethod(head_init="lp")


def test_cnn_and_kmer_baselines_on_poly(tmp_path):
    task = poly_task(40)
    assert CNNMethod(channels=16, n_layers=2, lr=3e-3).run(task, 0, ctx(tmp_path, max_epochs=3))["acc"] > 0.95
    res = KmerLRMethod(k_max=2, Cs=(0.1, 1.0)).run(task, 0, ctx(tmp_path))
    assert res["acc"] > 0.95 and res["C"] in (0.1, 1.0)
    cnn = CNNEncoder(10, 5, channels=8, n_layers=1)
    x = torch.tensor([[0, 1, 2, 5, 5]])
    assert cnn(x, x != 5).shape == (1, 8)


def test_kmer_lr_unseen_class_columns():
    pipe, C, acc = fit_kmer_lr((["AAAA", "CCCC"] * 5, [0, 2] * 5), (["AAAA", "CCCC"], [0, 2]), k_max=2)
    probs = predict_proba(pipe, ["AAAC"], num_classes=3)
    assert probs.shape == (1, 3) and probs[0, 1] == 0 and probs.sum() == pytest.approx(1)


def test_tokenizer_mismatch_is_a_clear_error(tmp_path):
    ckpt = write_checkpoint(tmp_path / "kmer.ckpt", tokenizer=KmerTokenizer(3))
    method = DenoiserMethod(checkpoint=str(ckpt))
    with pytest.raises(CheckpointError, match="tokenizer mismatch.*KmerTokenizer.*set tokenizer="):
        method.run(poly_task(10), 0, ctx(tmp_path))


def test_backbone_without_head_is_refused():
    with pytest.raises(TypeError, match="no `head` nn.Linear"):
        BackboneEncoder(torch.nn.Embedding(10, 4), 5)


def test_task_configs_compose_and_build():
    fixtures = Path(__file__).parent / "fixtures" / "downstream"
    from hydra.utils import instantiate

    cfg = compose("finetune", ["task=genomic_benchmarks", "task.name=yeast_coding_mini",
                                f"task.root={fixtures / 'genomic_benchmarks'}"])
    assert instantiate(cfg.task).summary()["train"]["n"] == 12
    for name in ("splice", "labeled", "yeast_coding"):
        assert compose("finetune", [f"task={name}"]).task["_target_"].startswith("seqdiff.dna.downstream")


def test_finetune_smoke_on_splice(tmp_path):
    """scripts/finetune.py's function: real splice data, tiny pretrained checkpoint, a few steps, 1 seed."""
    ckpt = write_checkpoint(tmp_path / "tiny.ckpt")
    cfg = compose("finetune", [
        "task=splice", f"checkpoint={ckpt}", "seeds=[0]", "trainer.max_epochs=2", "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2", "lr=1e-3"], run_dir=tmp_path / "run")
    out = finetune(cfg)
    assert out["method"] == "pretrained" and out["task"]["test"]["n"] == 1186
    seed0 = out["per_seed"][0]
    assert {"acc", "mcc", "f1", "auroc", "best_epoch", "val_acc"} <= set(seed0) and 0 <= seed0["acc"] <= 1
    assert Path(seed0["checkpoint"]).is_file()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["mean"]["acc"] == pytest.approx(seed0["acc"])


def test_benchmark_smoke_writes_json_and_table(tmp_path):
    ckpt = write_checkpoint(tmp_path / "tiny.ckpt", max_len=32)
    fixtures = Path(__file__).parent / "fixtures" / "downstream"
    cfg = compose("benchmark_downstream", [
        "task=genomic_benchmarks", "task.name=yeast_coding_mini", f"task.root={fixtures / 'genomic_benchmarks'}",
        f"checkpoint={ckpt}", "seeds=[0,1]", "trainer.max_epochs=1", "val_fraction=0.25", "long_sequences=tile",
        "methods.kmer_lr.k_max=3", "methods.cnn.channels=8", "methods.cnn.n_layers=1"], run_dir=tmp_path / "bench")
    out = benchmark_downstream(cfg)
    assert set(out["results"]) == {"pretrained", "linear_probe", "scratch", "kmer_lr", "cnn"}
    for r in out["results"].values():
        assert r["n_seeds"] == 2 and set(r["mean"]) == {"acc", "mcc", "f1", "auroc"}
    md = (tmp_path / "bench" / "results.md").read_text()
    assert md.startswith("| method | accuracy | MCC | macro-F1 | AUROC |") and "| kmer_lr |" in md
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["seeds"] == [0, 1]
    assert (tmp_path / "bench" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # several finished runs side by side: one table per task, one figure; nothing is trained
    cfg = compose("benchmark_downstream", [f"summary=[{tmp_path / 'bench'},{tmp_path / 'bench' / 'results.json'}]",
                                           f"summary_out={tmp_path / 'all'}"], run_dir=tmp_path / "unused")
    runs = benchmark_downstream(cfg)
    assert list(runs) == ["yeast_coding_mini"]  # same task twice: one entry (methods merged)
    assert set(runs["yeast_coding_mini"]["results"]) == set(out["results"])
    summary = (tmp_path / "all.md").read_text()
    assert "### yeast_coding_mini" in summary and "| kmer_lr |" in summary
    assert (tmp_path / "all.png").stat().st_size > 1000
    other = json.loads((tmp_path / "bench" / "results.json").read_text())  # methods split over two runs
    kmer = {"results": {"kmer_lr": other["results"].pop("kmer_lr")}, "seconds": {"kmer_lr": 1.0}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(other))
    (tmp_path / "b" / "results.json").write_text(json.dumps({**other, **kmer}))
    runs = benchmark_downstream(compose("benchmark_downstream", [f"summary=[{tmp_path / 'a'},{tmp_path / 'b'}]",
                                                                 f"summary_out={tmp_path / 'ab'}"],
                                        run_dir=tmp_path / "unused"))
    assert set(runs["yeast_coding_mini"]["results"]) == set(out["results"])
    assert "| kmer_lr |" in (tmp_path / "ab.md").read_text() and "| cnn |" in (tmp_path / "ab.md").read_text()
    (tmp_path / "b" / "results.json").write_text(json.dumps({**other, **kmer, "seeds": [0]}))
    with pytest.raises(ValueError, match="differ from"):
        benchmark_downstream(compose("benchmark_downstream", [f"summary=[{tmp_path / 'a'},{tmp_path / 'b'}]",
                                                              f"summary_out={tmp_path / 'ab'}"],
                                     run_dir=tmp_path / "u"))
    with pytest.raises(FileNotFoundError, match="no results.json"):
        benchmark_downstream(compose("benchmark_downstream", [f"summary=[{tmp_path / 'nowhere'}]"],
                                     run_dir=tmp_path / "unused"))


def test_benchmark_without_checkpoint_says_what_to_do(tmp_path):
    cfg = compose("benchmark_downstream", ["task=splice"], run_dir=tmp_path)
    need = r"linear_probe, pretrained need .*pass checkpoint=PATH .*methods.linear_probe=null methods.pretrained=null"
    with pytest.raises(ValueError, match=need):
        benchmark_downstream(cfg)


def test_markdown_table_format():
    r = {"mean": {"acc": 0.9512, "mcc": 0.9, "f1": 0.95, "auroc": 0.99},
         "std": {"acc": 0.004, "mcc": 0.01, "f1": 0.005, "auroc": 0.001}, "n_seeds": 5,
         "val_acc": {"mean": 0.9345, "std": 0.012}}
    row = "| cnn | 95.1 ± 0.4 | 0.900 ± 0.010 | 95.0 ± 0.5 | 0.990 ± 0.001 | 93.5 ± 1.2 | 5 | 12 |"
    assert row in markdown_table({"cnn": r}, {"cnn": 12.3})

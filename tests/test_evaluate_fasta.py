"""`scripts/evaluate.py fasta=...` reports total nats / total real bases over the file; a short
window weighs by its length, a k-mer tail token counts its own bases, and no window is padded (a bidirectional
backbone would attend to the padding)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.evaluate import equal_length_batches, evaluate
from seqdiff.evaluation.likelihood import evaluate_likelihood

from helpers import compose


class FixedAR(nn.Module):
    """A 'causal' backbone with fixed next-token logits per token id: exact NLLs computable by hand."""

    causal = True

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(logits.clone(), requires_grad=False)  # (V,)

    def forward(self, x: torch.Tensor, t=None) -> torch.Tensor:
        return self.table.expand(*x.shape, -1)


@pytest.mark.parametrize("tok", [NucleotideTokenizer(), KmerTokenizer(3)], ids=["char", "kmer"])
def test_bits_per_base_is_total_nats_over_total_real_bases(tok):
    torch.manual_seed(0)
    model = FixedAR(torch.randn(tok.vocab_size))
    nll = -model.table.log_softmax(-1)  # (V,) nats of each token
    full = torch.tensor([tok.encode("ACGTTGCAACGT" * 2)])  # 24 bases
    short = torch.tensor([tok.encode("GGTCA")])  # 5 bases: for k=3 one 3-mer and a 2-base tail token
    res = evaluate_likelihood(model, tok, [full, short], objective="ar", progress=False)
    nats = float(nll[full].sum() + nll[short].sum())
    assert res.tokens == full.numel() + short.numel() and res.windows == 2
    assert res.bits_per_base == pytest.approx(nats / 29 / math.log(2), rel=1e-6)  # float32 logits
    assert res.bits_per_token == pytest.approx(nats / res.tokens / math.log(2), rel=1e-6)
    # the per-window average this replaced weighs the 5-base window like the 24-base one
    per_window = (float(nll[full].mean()) + float(nll[short].mean())) / 2 / math.log(2) / tok.bases_per_token
    assert res.bits_per_base != pytest.approx(per_window, rel=1e-3)


def test_equal_length_batches_never_mix_lengths():
    batches = equal_length_batches([4, 4, 2, 4, 2, 4], [10, 11, 12, 13, 14, 15], batch_size=3)
    assert batches == [[10, 11, 13], [15], [12, 14]]


def test_evaluate_fasta_scores_unpadded_windows_of_any_length(tiny_checkpoint, tmp_path):
    # two records: 300 bases (window 128 -> 128 + 128 + a 44-base tail) and 50 bases (one short window)
    rng = torch.Generator().manual_seed(0)
    seqs = ["".join("ACGT"[i] for i in torch.randint(0, 4, (n,), generator=rng)) for n in (300, 50)]
    fa = tmp_path / "two.fa"
    fa.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    cfg = compose("evaluate", [f"checkpoint={tiny_checkpoint}", f"fasta={fa}", f"out={tmp_path / 'e.json'}",
                               "timestep_samples=2", "device=cpu"])
    out = evaluate(cfg)
    assert out["windows"] == 4 and out["tokens"] == 350  # every real base, no padding token counted
    assert math.isfinite(out["bits_per_base"]) and out["bits_per_base"] > 0

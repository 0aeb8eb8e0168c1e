"""precision=auto: resolved by a measured probe (forced both ways here), bf16 inference close to fp32."""

import pytest
import torch

from seqdiff import precision as P
from seqdiff.backbones import Transformer
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.evaluation.likelihood import evaluate_likelihood
from seqdiff.noise import LogLinearSchedule


@pytest.fixture(scope="module")
def real_windows() -> torch.Tensor:
    """16 windows of 128 bp of real human chr20 (the committed fixture)."""
    from seqdiff.dna.windows import fasta_windows

    from helpers import CHR20

    ds = fasta_windows(CHR20, NucleotideTokenizer(), 128)
    return torch.stack([ds[i]["x0"] for i in range(0, 16 * 7, 7)])


@pytest.fixture
def forced(monkeypatch):
    def force(fp32: float, bf16: float) -> None:
        monkeypatch.setattr(P, "probe", lambda device="cpu": P.PrecisionProbe(device, fp32, bf16))
    return force


def test_auto_resolves_by_the_probe_both_ways(forced):
    forced(100.0, 900.0)  # AMX-like: bf16 matmul 9x
    assert P.resolve_training_precision("auto") == "bf16-mixed"
    assert P.inference_dtype("auto") is torch.bfloat16
    forced(100.0, 110.0)  # emulated bf16: no gain
    assert P.resolve_training_precision("auto") == "32-true"
    assert P.inference_dtype("auto") is None
    forced(100.0, 0.0)  # unsupported
    assert P.resolve_training_precision("auto") == "32-true"
    # explicit choices are never overridden by the probe
    assert P.resolve_training_precision("bf16-mixed") == "bf16-mixed"
    assert P.inference_dtype("bf16") is torch.bfloat16 and P.inference_dtype("fp32") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        P.inference_dtype("fp16")


def test_probe_measures_both_dtypes_on_this_machine():
    p = P.probe.__wrapped__("cpu")  # uncached: a real measurement
    assert p.fp32_gflops > 0 and p.device == "cpu"
    assert p.as_dict()["choice"] in ("bf16", "fp32")


def test_autocast_wrapper_forwards_attributes_and_runs_in_bf16():
    m = Transformer(10, 32, d_model=32, n_layers=1, n_heads=2, d_cond=16).eval()
    w = P.Autocast(m, torch.bfloat16)
    assert w.max_len == 32 and w.time_conditioning is False and w.causal is False
    with torch.no_grad():
        out = w(torch.randint(0, 4, (2, 32)))
    assert out.dtype == torch.bfloat16
    assert P.with_precision(m, "fp32") is m


def test_bf16_and_fp32_evaluation_of_the_same_model_agree(real_windows):
    """Same checkpoint-like model, same windows and timestep draws: bf16 autocast vs fp32 bits/base.

    The masks and timesteps come from the same seeded generator, so only rounding differs. bf16 keeps 8
    mantissa bits (relative rounding 2^-9 per value); the NELBO averages thousands of token terms whose
    rounding errors mostly cancel (measured here: 3e-5 relative). The bound is the 0.2% the project promises
    for real checkpoints (docs/benchmarks.md has that measurement); a wrong cast breaks it by far."""
    tok = NucleotideTokenizer()
    torch.manual_seed(0)
    m = Transformer(tok.vocab_size, real_windows.shape[1], d_model=64, n_layers=2, n_heads=2, d_cond=32).eval()
    torch.nn.init.normal_(m.head.weight, std=0.05)  # a non-uniform, not saturated distribution
    kw = dict(objective="mdlm", schedule=LogLinearSchedule(), timestep_samples=2, seed=0, progress=False)
    fp32 = evaluate_likelihood(m, tok, real_windows.split(8), **kw)
    bf16 = evaluate_likelihood(P.Autocast(m, torch.bfloat16), tok, real_windows.split(8), **kw)
    assert abs(bf16.bits_per_base - fp32.bits_per_base) / fp32.bits_per_base < 2e-3


def test_cli_precision_choice_is_applied_and_reported(tiny_checkpoint, tmp_path):
    """evaluate/sample take precision=auto|bf16|fp32 and say which ran; bf16 bits/base stays close to fp32."""
    from seqdiff.evaluate import evaluate
    from seqdiff.sample import sample

    from helpers import compose

    runs = {}
    for prec in ("fp32", "bf16"):
        cfg = compose("evaluate", [f"checkpoint={tiny_checkpoint}", "split=valid", f"out={tmp_path / prec}.json",
                                   "timestep_samples=2", "max_windows=8", "device=cpu", f"precision={prec}"])
        runs[prec] = evaluate(cfg)
        assert runs[prec]["precision"] == prec
    # same masks and timesteps (seeded), so only rounding differs: see the model-level test above for the bound
    assert abs(runs["bf16"]["bits_per_base"] - runs["fp32"]["bits_per_base"]) / runs["fp32"]["bits_per_base"] < 2e-3
    out = sample(compose("sample", [f"checkpoint={tiny_checkpoint}", f"out={tmp_path / 's.fa'}", "num_samples=2",
                                    "length=64", "steps=4", "device=cpu", "precision=bf16"]))
    assert out["precision"] == "bf16" and out["num_samples"] == 2
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate(compose("evaluate", [f"checkpoint={tiny_checkpoint}", "device=cpu", "precision=half"]))


def test_finetune_trainer_precision_follows_the_probe(forced, tmp_path):
    """finetune's trainer.precision=auto is resolved by the same measured rule as training."""
    from seqdiff.dna.downstream.finetune import setup

    from helpers import FIXTURES, compose

    over = ["task=genomic_benchmarks", "task.name=yeast_coding_mini",
            f"task.root={FIXTURES / 'downstream' / 'genomic_benchmarks'}", f"run_dir={tmp_path}", "device=cpu"]
    forced(100.0, 900.0)
    assert setup(compose("finetune", over), keep_checkpoints=False)[1].trainer.precision == "bf16-mixed"
    forced(100.0, 110.0)
    assert setup(compose("finetune", over), keep_checkpoints=False)[1].trainer.precision == "32-true"
    assert setup(compose("finetune", [*over, "trainer.precision=bf16-mixed"]),
                 keep_checkpoints=False)[1].trainer.precision == "bf16-mixed"

"""Caduceus backbones: selective scans vs the naive reference, BiMamba directions, exact RC equivariance of
Caduceus-PS, strand symmetry of Caduceus-Ph, construction errors, configs, and a diffusion training smoke test."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdiff.backbones.mamba as mamba
from seqdiff.backbones.caduceus import (
    BiMamba,
    CaduceusPh,
    CaduceusPS,
    reverse_complement,
    reverse_complement_logits,
)
from seqdiff.backbones.mamba import SCAN_IMPLS, MambaMixer, selective_scan
from seqdiff.diffusion import mdlm_nelbo
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.noise import LogLinearSchedule, sample_t
from seqdiff.train import build_backbone

from helpers import ROOT, compose

DNA = (ROOT / "tests/fixtures/caduceus/chr20_10000000_10004096.txt").read_text().strip()
TOK = NucleotideTokenizer()
COMP = TOK.complement_ids.tolist()
V, PAD, MASK = TOK.vocab_size, TOK.pad_id, TOK.mask_id


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest.py)


def dna_batch(B: int, L: int, seed: int = 0, mask_frac: float = 0.3, pad: int = 0) -> torch.Tensor:
    """B real chr20 windows of L tokens, a fraction masked (as a denoiser sees them), `pad` trailing pads."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(DNA) - L, (B,), generator=g)
    x = torch.stack([torch.tensor(TOK.encode(DNA[s : s + L])) for s in starts.tolist()])
    x = torch.where(torch.rand(x.shape, generator=g) < mask_frac, MASK, x)
    if pad:
        x[:, L - pad :] = PAD
    return x


def scan_inputs(b: int, d: int, L: int, n: int, g: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64)
    return [
        torch.randn(b, d, L, generator=gen, **f64),  # u
        torch.randn(b, d, L, generator=gen, **f64),  # delta (pre-softplus)
        -torch.rand(d, n, generator=gen, **f64) * 4,  # A
        torch.randn(b, g, n, L, generator=gen, **f64),  # B
        torch.randn(b, g, n, L, generator=gen, **f64),  # C
        torch.randn(d, generator=gen, **f64),  # D
        torch.randn(b, d, L, generator=gen, **f64),  # z
        torch.randn(d, generator=gen, **f64),  # delta_bias
    ]


def scan_and_grads(impl: str, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    leaves = [t.clone().requires_grad_() for t in inputs]
    y = selective_scan(*leaves, delta_softplus=True, impl=impl)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)  # a non-uniform upstream gradient
    return (y, *torch.autograd.grad((y * w).sum(), leaves, materialize_grads=True))


# ------------------------------------------------------------------------------------------ selective scan


@pytest.mark.parametrize("impl", [i for i in SCAN_IMPLS if i != "naive"])
@pytest.mark.parametrize("L,g", [(1, 1), (37, 2), (64, 1), (70, 2)])
def test_scan_matches_naive_forward_and_gradients(impl, L, g, monkeypatch):
    monkeypatch.setattr(mamba, "FUSED_BLOCK_ELEMENTS", 1)  # fused: 8-step blocks, so blocks and a tail
    inputs = scan_inputs(2, 6, L, 4, g)
    for got, want in zip(scan_and_grads(impl, inputs), scan_and_grads("naive", inputs), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    b=st.integers(1, 3), d=st.sampled_from([2, 4, 6]), L=st.integers(1, 40), n=st.integers(1, 5),
    g=st.sampled_from([1, 2]), block=st.sampled_from([1, 100, 2**18]), seed=st.integers(0, 2**16),
)
def test_fused_scan_matches_naive_on_random_shapes(b, d, L, n, g, block, seed):
    mamba.FUSED_BLOCK_ELEMENTS, old = block, mamba.FUSED_BLOCK_ELEMENTS
    try:
        inputs = scan_inputs(b, d, L, n, g, seed)
        for got, want in zip(scan_and_grads("fused", inputs), scan_and_grads("naive", inputs), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    finally:
        mamba.FUSED_BLOCK_ELEMENTS = old


def test_scan_accepts_ungrouped_B_C_and_float32():
    u, delta, A, B, C, D, z, bias = (t.float() for t in scan_inputs(2, 4, 20, 3, 1))
    y3 = selective_scan(u, delta, A, B[:, 0], C[:, 0], D, z, bias, True)
    y4 = selective_scan(u, delta, A, B, C, D, z, bias, True, impl="naive")
    assert y3.dtype == torch.float32
    torch.testing.assert_close(y3, y4, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown scan impl"):
        selective_scan(u, delta, A, B, C, impl="fast")


def test_scan_is_stable_for_large_decays():
    """delta*|A| summed over a sequence far beyond exp's range: states decay to 0, nothing overflows."""
    u, delta, A, B, C, *_ = scan_inputs(1, 4, 300, 3, 1)
    A = A * 100
    want = selective_scan(u, delta.abs() + 1, A, B, C, impl="naive")
    for impl in SCAN_IMPLS:
        got = selective_scan(u, delta.abs() + 1, A, B, C, impl=impl)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_kernel_matches_pytorch_scan():
    pytest.importorskip("mamba_ssm")
    assert mamba._cuda_selective_scan() is not None, "mamba_ssm imports but its selective scan kernel does not"
    inputs = [t.float() for t in scan_inputs(2, 8, 100, 4, 2)]
    cpu = scan_and_grads("fused", inputs)
    gpu = scan_and_grads("fused", [t.cuda() for t in inputs])
    for got, want in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------ BiMamba mixer


@pytest.mark.parametrize("tie", [True, False])
def test_bimamba_is_forward_plus_flipped_reverse_mamba(tie):
    """The batched two-direction mixer equals two one-direction Mambas, the second on the flipped input."""
    torch.manual_seed(0)
    bi = MambaMixer(8, d_state=4, expand=2, tie=tie, scan_impl="fused").double()
    fwd, rev = (MambaMixer(8, d_state=4, expand=2, bidirectional=False).double() for _ in range(2))
    di = bi.d_inner
    with torch.no_grad():
        for k, m in enumerate((fwd, rev)):
            ch = slice(k * di, (k + 1) * di)
            m.in_proj.weight.copy_(bi.in_proj.weight if tie else bi.in_proj.weight[k * 2 * di : (k + 1) * 2 * di])
            m.out_proj.weight.copy_(bi.out_proj.weight if tie else bi.out_proj.weight[:, ch])
            m.conv.weight.copy_(bi.conv.weight[ch])
            m.conv.bias.copy_(bi.conv.bias[ch])
            m.x_proj.copy_(bi.x_proj[k : k + 1])
            m.dt_proj.copy_(bi.dt_proj[k : k + 1])
            for name in ("dt_bias", "A_log", "D"):
                getattr(m, name).copy_(getattr(bi, name)[ch])
    h = torch.randn(3, 11, 8, dtype=torch.float64)
    torch.testing.assert_close(bi(h), fwd(h) + rev(h.flip(1)).flip(1))


def test_mixer_scan_impls_agree():
    torch.manual_seed(0)
    m = MambaMixer(16, d_state=4)
    h = torch.randn(2, 33, 16)
    outs = []
    for impl in ("fused", "chunked", "unbind", "logstep"):
        m.scan_impl = impl
        outs.append(m(h))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ RC symmetry


def randomize_conditioning(model: torch.nn.Module) -> None:
    """adaLN layers are zero-initialised; give them weights so t really changes the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("L,pad", [(1, 0), (8, 0), (33, 5), (64, 0), (101, 7)])
def test_caduceus_ps_is_exactly_rc_equivariant(time_conditioning, L, pad):
    torch.manual_seed(0)
    m = CaduceusPS(V, 128, d_model=32, n_layers=2, d_state=8, complement_ids=COMP, time_conditioning=time_conditioning)
    randomize_conditioning(m)
    comp = torch.tensor(COMP)
    x = dna_batch(3, L, seed=L, pad=pad)
    x[0] = torch.randint(0, V, (L,))  # plus one uniformly random sequence over the whole vocabulary
    t = torch.tensor([0.05, 0.5, 0.95])
    for train in (True, False):
        m.train(train)
        out = m(x, t)
        assert out.shape == (3, L, V)
        torch.testing.assert_close(m(reverse_complement(x, comp), t), reverse_complement_logits(out, comp),
                                   rtol=0, atol=1e-5)
    if time_conditioning:
        assert not torch.allclose(m(x, t), m(x, 1 - t))  # t is really used


def test_caduceus_ps_equivariant_for_kmer_tokens():
    """A full k-mer vocabulary is closed under RC: PS is equivariant w.r.t. the tokenizer's reverse_complement."""
    tok = KmerTokenizer(k=2)
    m = CaduceusPS(tok.vocab_size, 64, d_model=16, n_layers=1, complement_ids=tok.complement_ids.tolist()).eval()
    x = torch.tensor([tok.encode(DNA[i : i + 40]) for i in (0, 1000)])  # 20 tokens each
    torch.testing.assert_close(
        m(tok.reverse_complement(x)), reverse_complement_logits(m(x), tok.complement_ids), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_caduceus_ph_conjoined_predictions_are_strand_symmetric(time_conditioning):
    torch.manual_seed(0)
    m = CaduceusPh(V, 64, d_model=16, n_layers=2, complement_ids=COMP, time_conditioning=time_conditioning)
    randomize_conditioning(m)
    comp = torch.tensor(COMP)
    x, t = dna_batch(4, 31, seed=3), torch.rand(4)
    m.eval()
    out = m(x, t)
    torch.testing.assert_close(m(reverse_complement(x, comp), t), reverse_complement_logits(out, comp),
                               rtol=0, atol=1e-5)
    # conjoin = mean of the plain strand predictions; training mode sees one strand (RC augmentation)
    c = m.conditioning(t, 4, x.device)
    fwd, back = m.trunk(x, c), reverse_complement_logits(m.trunk(reverse_complement(x, comp), c), comp)
    torch.testing.assert_close(out, (fwd + back) / 2)
    m.train()
    torch.manual_seed(5)
    train_out = m(x, t)
    for i in range(4):
        # one strand per sample in training; the batch of 4 vs 1 layout rounds differently -> float32 tolerance
        assert torch.allclose(train_out[i], fwd[i], atol=1e-5) or torch.allclose(train_out[i], back[i], atol=1e-5)


# ------------------------------------------------------------------------------------------ interface and errors


def test_backbone_interface_and_gradients_reach_every_parameter():
    for m in (
        BiMamba(V, 32, d_model=16, n_layers=2, time_conditioning=True),
        CaduceusPS(V, 32, d_model=16, n_layers=2, complement_ids=COMP, time_conditioning=True),
        CaduceusPh(V, 32, d_model=16, n_layers=2, complement_ids=COMP, tie=False),
    ):
        assert m.causal is False and isinstance(m.time_conditioning, bool)
        randomize_conditioning(m)
        x = dna_batch(2, 32)
        logits = m(x, torch.rand(2))
        assert logits.shape == (2, 32, V) and logits.dtype == torch.float32
        logits.logsumexp(-1).sum().backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing
        assert m(x).shape == (2, 32, V)  # t=None is allowed


def test_bad_construction_and_input_errors():
    with pytest.raises(ValueError, match="odd"):
        CaduceusPS(V, 64, d_model=33, complement_ids=COMP)
    for cls in (CaduceusPS, CaduceusPh):
        with pytest.raises(ValueError, match="needs complement_ids"):
            cls(V, 64, d_model=16)
    with pytest.raises(ValueError, match="entries, vocab_size"):
        CaduceusPS(V, 64, d_model=16, complement_ids=COMP[:4])
    with pytest.raises(ValueError, match="outside"):
        CaduceusPS(V, 64, d_model=16, complement_ids=[3, 2, 1, 0, 4, 5, 6, 7, 8, 10])
    with pytest.raises(ValueError, match="not an involution"):
        CaduceusPS(V, 64, d_model=16, complement_ids=[1, 2, 3, 0, 4, 5, 6, 7, 8, 9])  # A->C->G->T->A
    with pytest.raises(ValueError, match="scan_impl"):
        BiMamba(V, 64, scan_impl="cuda")
    with pytest.raises(ValueError, match="n_layers"):
        BiMamba(V, 64, n_layers=0)
    m = CaduceusPS(V, 16, d_model=16, n_layers=1, complement_ids=COMP)
    with pytest.raises(ValueError, match="exceeds the model's max_len=16"):
        m(dna_batch(1, 17))


@pytest.mark.parametrize("name", ["bimamba", "caduceus_ps", "caduceus_ph"])
def test_configs_build_through_the_training_entry(name):
    cfg = compose(f"model/{name}", ["model.n_layers=1"])  # the group file alone, as in train.yaml
    backbone, init = build_backbone(cfg.model, TOK, 64)
    assert ("complement_ids" in init) == (name != "bimamba")
    assert backbone(dna_batch(2, 64)).shape == (2, 64, V)


# ------------------------------------------------------------------------------------------ training


def test_caduceus_ps_trains_with_the_diffusion_objective():
    """A few AdamW steps on real chr20 windows with the MDLM NELBO: the loss falls and stays finite."""
    torch.manual_seed(0)
    m = CaduceusPS(V, 128, d_model=32, n_layers=2, d_state=8, complement_ids=COMP, time_conditioning=True)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    sched, g = LogLinearSchedule(), torch.Generator().manual_seed(0)
    x0 = dna_batch(8, 64, seed=1, mask_frac=0.0)
    losses = []
    for _ in range(30):
        t = sample_t(8, generator=g)
        loss = mdlm_nelbo(m, x0, sched, t, MASK, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_bf16_autocast_forward_and_backward():
    m = CaduceusPS(V, 32, d_model=16, n_layers=1, complement_ids=COMP)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(dna_batch(2, 32))
    assert torch.isfinite(logits).all()
    logits.float().logsumexp(-1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)

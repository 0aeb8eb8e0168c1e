"""The CUDA-only code paths, checked on CPU through the mechanism each one relies on.

- random draws happen on the generator's device (torch refuses a CPU generator for a CUDA draw): checked with a
  strict torch.rand that raises on any generator/device mismatch, with tensors on the meta device;
- `device=auto|cpu|cuda` resolves once (seqdiff.device) for every inference entry point;
- the mamba-ssm probe needs the compiled `selective_scan_cuda`, and causal-conv1d's kernel gets the arguments
  the reference Mamba block passes (fake modules, kernels switched on by monkeypatching);
- no host sync in the non-finite guard when the optimizer can skip a step on the device.
"""

from __future__ import annotations

import ast
import sys
import types
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import seqdiff.backbones.mamba as mamba
from seqdiff.device import make_generator, rand, resolve_device
from seqdiff.noise import add_noise, sample_t
from seqdiff.reliability import NonFiniteGuard, NonFiniteLossError
from seqdiff.sampling.samplers import sample_categorical

from helpers import ROOT as REPO
from helpers import compose


# ---- devices and generators ---------------------------------------------------------------------------------
def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    with pytest.raises(ValueError, match="device='cuda', but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device='tpu': expected one of auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("config", ["sample", "design", "evaluate", "infill", "tables", "finetune"])
def test_every_inference_config_has_a_device_option(config):
    assert compose(config).device == "auto"


@pytest.fixture
def strict_rand(monkeypatch):
    """torch.rand that, like a CUDA draw, refuses a generator on another device than the output."""
    real = torch.rand

    def checked(*size, generator=None, device=None, **kw):
        want = torch.device(device if device is not None else "cpu")
        if generator is not None and generator.device.type != want.type:
            raise RuntimeError(f"Expected a '{want.type}' device type for generator but found "
                               f"'{generator.device.type}'")
        return real(*size, generator=generator, device=device, **kw)

    monkeypatch.setattr(torch, "rand", checked)


def test_draws_use_the_generators_device(strict_rand):
    g = make_generator(0, "cpu")  # a CPU generator with tensors elsewhere (meta stands in for CUDA)
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.rand(3, generator=g, device="meta")  # what the samplers did before: it raises on CUDA
    x0 = torch.zeros(2, 8, dtype=torch.long, device="meta")
    assert rand((2, 8), g, "meta").device.type == "meta"
    assert add_noise(x0, torch.full((2,), 0.5, device="meta"), mask_id=6, generator=g).device.type == "meta"
    assert sample_t(4, generator=g, device="meta").device.type == "meta"
    assert sample_categorical(torch.zeros(2, 8, 5, device="meta"), g).shape == (2, 8)
    # and the values are those of the generator: the same seed gives the same noise on the CPU
    torch.testing.assert_close(rand((5,), make_generator(1)), torch.rand(5, generator=make_generator(1)),
                               rtol=0, atol=0)  # the same draw, not a recomputation


def test_seeded_draws_in_seqdiff_go_through_the_device_helpers():
    """Every torch.rand/randn/randint/randperm/multinomial/bernoulli call given a generator lives in
    seqdiff/device.py, which draws on the generator's device; a new call elsewhere would raise on CUDA."""
    drawing = {"rand", "randn", "randint", "randperm", "multinomial", "bernoulli", "normal", "rand_like"}
    offenders = []
    for path in (REPO / "seqdiff").rglob("*.py"):
        if path.name == "device.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in drawing
                    and any(k.arg == "generator" for k in node.keywords)):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


# ---- mamba-ssm / causal-conv1d --------------------------------------------------------------------------------
@pytest.fixture
def fake_kernels(monkeypatch):
    """Install fake mamba_ssm / causal_conv1d modules; returns a dict to fill in. Clears the probes' caches."""
    mods: dict = {}

    def install(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    mamba._cuda_selective_scan.cache_clear()
    mamba._cuda_causal_conv1d.cache_clear()
    yield install, mods
    mamba._cuda_selective_scan.cache_clear()
    mamba._cuda_causal_conv1d.cache_clear()


def test_mamba_probe_needs_the_compiled_selective_scan(fake_kernels):
    install, _ = fake_kernels

    def selective_scan_fn(*a, **k):
        raise RuntimeError("selective_scan_cuda is not installed")  # mamba-ssm after commit f577286

    install("mamba_ssm")
    ops = install("mamba_ssm.ops")
    ssi = install("mamba_ssm.ops.selective_scan_interface", selective_scan_fn=selective_scan_fn,
                  selective_scan_cuda=None)
    ops.selective_scan_interface = ssi
    assert mamba._cuda_selective_scan() is None  # imports fine, but the kernel is absent: PyTorch scan
    mamba._cuda_selective_scan.cache_clear()
    ssi.selective_scan_cuda = object()  # a build with the extension
    assert mamba._cuda_selective_scan() is selective_scan_fn


def test_mixer_calls_the_cuda_kernels_as_the_reference_mamba_block(fake_kernels, monkeypatch):
    install, _ = fake_kernels
    calls = []

    def causal_conv1d_fn(x, weight, bias=None, activation=None):  # causal-conv1d's reference semantics
        calls.append(("conv", x.shape, x.is_contiguous(), weight.shape, bias.shape, activation))
        out = F.conv1d(F.pad(x, (weight.shape[1] - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
        return F.silu(out) if activation == "silu" else out

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        calls.append(("scan", u.shape, B.shape))
        with monkeypatch.context() as m:  # mamba-ssm's semantics = the PyTorch reference scan
            m.setattr(mamba, "_use_cuda_kernels", lambda x: False)
            return mamba.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, impl="naive")

    install("causal_conv1d", causal_conv1d_fn=causal_conv1d_fn)
    install("mamba_ssm")
    install("mamba_ssm.ops")
    sys.modules["mamba_ssm.ops"].selective_scan_interface = install(
        "mamba_ssm.ops.selective_scan_interface", selective_scan_fn=selective_scan_fn, selective_scan_cuda=object())
    torch.manual_seed(0)
    mixer = mamba.MambaMixer(d_model=8, d_state=4, expand=2, scan_impl="naive").double()
    h = torch.randn(2, 11, 8, dtype=torch.float64)
    ref = mixer(h)  # CPU path: nn.Conv1d and the PyTorch scan
    assert not calls
    monkeypatch.setattr(mamba, "_use_cuda_kernels", lambda x: True)
    out = mixer(h)
    c = 2 * mixer.d_inner  # both directions' channels
    assert calls == [("conv", (2, c, 11), True, (c, 4), (c,), "silu"), ("scan", (2, c, 11), (2, 2, 4, 11))]
    torch.testing.assert_close(out, ref)  # float64, same maths: default tolerances


# ---- schedules and sampling -----------------------------------------------------------------------------------
def test_cosine_schedule_keeps_the_reconstruction_term():
    from seqdiff.noise import CosineSchedule

    s = CosineSchedule(eps=1e-3)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(s.alpha(t), 1e-3 + (1 - 1e-3) * torch.cos(torch.pi / 2 * t))
    assert s.alpha(t)[0] == 1.0 and s.alpha(t)[-1] == pytest.approx(1e-3)
    h = 1e-6  # dalpha against central differences (float64)
    tt = torch.tensor([0.2, 0.7], dtype=torch.float64)
    torch.testing.assert_close(s.dalpha(tt), (s.alpha(tt + h) - s.alpha(tt - h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_kmer_sampling_never_emits_a_short_tail_token():
    from seqdiff.backbones import Transformer
    from seqdiff.dna.tokenizer import KmerTokenizer
    from seqdiff.sampling import AncestralSampler, no_special_tokens, sample

    tok = KmerTokenizer(3)
    c = no_special_tokens(tok, 16)
    tails = (tok.token_bases > 0) & (tok.token_bases < 3)
    assert tails.sum() == 30 and not c.allowed[:, tails].any()
    assert c.allowed[:, tok.token_bases == 3].all()
    torch.manual_seed(0)
    bb = Transformer(tok.vocab_size, 16, d_model=16, n_layers=1, n_heads=2, d_cond=16).eval()
    with torch.no_grad():  # an untrained model puts mass on tail tokens too: the constraint must remove it
        bb.head.bias[tails] = 5.0
    out = sample(bb, tok.mask_id, 4, 16, AncestralSampler(num_steps=8), constraints=c, generator=make_generator(0))
    assert (tok.token_bases[out.tokens] == 3).all()
    assert all(len(tok.decode(row)) == 48 for row in out.tokens)


# ---- non-finite guard without host syncs -------------------------------------------------------------------------
def _guard_setup(action: str):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)  # what configure_optimizers builds on CUDA
    saved = []
    trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), world_size=1, global_step=7,
                              save_checkpoint=saved.append, checkpoint_callback=None, default_root_dir="/tmp/x")
    return NonFiniteGuard(action=action), model, opt, trainer, saved


def _bad_step(guard, model, opt, trainer, monkeypatch):
    loss = model(torch.ones(1, 3)).sum() * float("nan")
    with monkeypatch.context() as m:  # any host read of a tensor here would be a GPU sync
        for name in ("item", "__bool__", "tolist", "__float__", "__int__"):
            m.setattr(torch.Tensor, name, lambda *a, _n=name: pytest.fail(f"host sync: Tensor.{_n}"))
        guard.on_before_backward(trainer, model, loss)
        model.weight.grad, model.bias.grad = torch.ones(2, 3), torch.ones(2)
        guard.on_before_optimizer_step(trainer, model, opt)
        opt.step()


@pytest.mark.parametrize("action", ["skip", "stop"])
def test_guard_skips_on_the_device_without_host_syncs(action, monkeypatch):
    guard, model, opt, trainer, saved = _guard_setup(action)
    before = [p.detach().clone() for p in model.parameters()]
    _bad_step(guard, model, opt, trainer, monkeypatch)
    for p, b in zip(model.parameters(), before, strict=True):  # the fused kernel skipped the update
        assert torch.equal(p, b)
    assert all(float(opt.state[p]["step"]) == 0 for p in model.parameters())
    if action == "skip":  # the host learns of it at the next batch: counted, training goes on
        guard.on_train_batch_start(trainer, model, None, 0)
        assert guard.skipped == 1 and not saved
    else:
        with pytest.raises(NonFiniteLossError, match="non-finite loss .* at step 7; the update was not applied"):
            guard.on_train_batch_start(trainer, model, None, 0)
        assert saved == ["/tmp/x/checkpoints/last.ckpt"]


def test_kernel_report_runs_without_cuda(monkeypatch):
    from seqdiff.device import kernel_report

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert kernel_report() == {"torch": torch.__version__, "cuda": False, "flash_attention": False,
                               "selective_scan": False, "causal_conv1d": False}

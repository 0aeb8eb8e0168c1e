"""The families' losses against hand computations and exact likelihoods of tiny enumerable models.

Setting: alphabet {0, 1, 2} (N = 3), mask id 3, sequences of L = 2 tokens, so every state of the forward and
reverse processes can be enumerated (9 clean states, 16 with masks). Everything runs in float64.

- hand: one position's loss written out term by term from the ELBO integrand (processes.py docstring).
- bound: for a fixed random tabular "denoiser", the exact NELBO (Gauss-Legendre quadrature over t, exact
  expectation over z_t) is >= -log p_theta(x), where p_theta is the model's own continuous-time reverse process
  solved exactly (products of matrix exponentials of its generator), for every x.
- tight: with the exact denoiser of a random data distribution (and alpha(1) = 0, so the prior is exact), the
  NELBO equals -log p_data(x) for every x: the loss is the ELBO itself, not merely some upper bound.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from seqdiff.diffusion.families import Family, MeanParameterization, ScoreParameterization
from seqdiff.noise import LogLinearSchedule
from seqdiff.noise.processes import AbsorbingProcess, UniformProcess

A, MASK, V, L = [0, 1, 2], 3, 4, 2
N = len(A)
NODES, WEIGHTS = np.polynomial.legendre.leggauss(400)  # on [-1, 1]
PARAMS = {"mean": MeanParameterization, "score": ScoreParameterization}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _process(kind: str, eps: float):
    cls = AbsorbingProcess if kind == "absorbing" else UniformProcess
    return cls(LogLinearSchedule(eps=eps), V, A, MASK)


def states(absorbing: bool) -> torch.Tensor:
    toks = A + [MASK] if absorbing else A
    return torch.tensor(list(itertools.product(toks, repeat=L)))


def q_marginal(proc, x0: torch.Tensor, z: torch.Tensor, t: float) -> torch.Tensor:
    """q_t(z | x0) for every z (S, L) given one x0 (L,)."""
    a = 1.0 - (1.0 - proc.schedule.eps) * t
    if proc.absorbing:
        per = torch.where(z == MASK, 1.0 - a, torch.where(z == x0, a, 0.0))
    else:
        per = torch.where(z == x0, a + (1 - a) / N, (1 - a) / N)
    return per.double().prod(-1)


class Table(nn.Module):
    """logits(x, t) from a function: a fixed random table, or the exact denoiser of a data distribution."""

    time_conditioning = True

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, t=None):
        return self.fn(x, t)


def random_table(seed: int):
    g = torch.Generator().manual_seed(seed)
    table = 2.0 * torch.randn(V**L, L, V, generator=g, dtype=torch.float64)
    return lambda x, t: table[x[:, 0] * V + x[:, 1]]


def q_single(proc, t: float) -> torch.Tensor:
    """Q1[z, x] = q_t(z | x) for one position: (V, N), rows of unreachable ids are 0."""
    a = 1.0 - (1.0 - proc.schedule.eps) * t
    Q1 = torch.zeros(V, N, dtype=torch.float64)
    Q1[A, A] = a
    if proc.absorbing:
        Q1[MASK, :] = 1.0 - a
    else:
        Q1[:N, :] += (1.0 - a) / N
    return Q1


def exact_denoiser(p_data: torch.Tensor, proc, param: str):
    """The exact network output for data p_data (N, N) over pairs (x0_0, x0_1) (see the module docstring).

    mean: p(x0_l = v | z_{-l}) (the UDLM rate is exact with the posterior given the *other* positions);
    score: log s_v = log p_t(z^{l->v}) - log p_t(z), with p_t(z0, z1) = (Q1 P Q1^T)[z0, z1]."""
    P = p_data.view(N, N)

    def fn(x, t):
        assert torch.all(t == t[0]), "one time per batch"
        tb = float(t[0])
        Q1 = q_single(proc, tb)
        z0, z1 = x[:, 0], x[:, 1]
        out = torch.full((len(x), L, V), -torch.inf, dtype=torch.float64)
        if param == "mean":
            out[:, 0, :N] = (Q1[z1] @ P.T).clamp_min(1e-300).log()  # sum_{x1} P[v, x1] q(z1 | x1)
            out[:, 1, :N] = (Q1[z0] @ P).clamp_min(1e-300).log()  # sum_{x0} P[x0, v] q(z0 | x0)
        else:
            M = Q1 @ P @ Q1.T  # (V, V) joint marginal p_t(z0, z1)
            pz = M[z0, z1].log()[:, None]
            out[:, 0, :N] = M[:N, z1].T.clamp_min(1e-300).log() - pz
            out[:, 1, :N] = M[z0, :N].clamp_min(1e-300).log() - pz
            if proc.absorbing:  # undo SEDD's shift: log s = logits - log expm1(sigma) - log N
                a = 1.0 - (1.0 - proc.schedule.eps) * tb
                out[:, :, :N] += math.log(math.expm1(-math.log(a))) + math.log(N)
        return out

    return fn


def exact_nelbo(fam: Family, model: nn.Module, x0: torch.Tensor) -> float:
    """KL prior + int_0^1 E_{z ~ q_t(.|x0)} sum_l loss(z, t) dt, in nats for the whole sequence."""
    proc, par = fam.process, fam.parameterization
    zs = states(proc.absorbing)
    total = 0.0
    for u, w in zip(NODES, WEIGHTS, strict=True):
        t = 0.5 * (u + 1.0)
        q = q_marginal(proc, x0, zs, t)
        keep = q > 0
        z = zs[keep]
        tt = torch.full((len(z),), t, dtype=torch.float64)
        out = fam.output(model(z, tt), z, tt)
        loss = par.loss(proc, out, x0.expand_as(z), z, tt).sum(-1)
        total += 0.5 * w * float((q[keep] * loss).sum())
    return total + float(proc.prior_kl(x0[None]).sum())


def model_rates(fam: Family, model: nn.Module, t: float) -> torch.Tensor:
    """Generator G (S, S) of the model's reverse CTMC at time t, built from its ratio s_theta(z)_{l,v}:
    rate(z -> z with z_l = v) = fwd(v -> z_l) s_theta(z)_{l,v}."""
    proc = fam.process
    zs = states(proc.absorbing)
    K = N + 1 if proc.absorbing else N  # token values per position; state index = z_0 K + z_1
    a = 1.0 - (1.0 - proc.schedule.eps) * t
    da = -(1.0 - proc.schedule.eps)
    tt = torch.full((len(zs),), t, dtype=torch.float64)
    out = fam.output(model(zs, tt), zs, tt)[..., :N]  # (S, L, N)
    if proc.absorbing:
        # only masked positions move; fwd(v -> mask) = sigma' = -alpha'/alpha
        if isinstance(fam.parameterization, MeanParameterization):
            rate = -da / (1 - a) * out.exp()  # sigma' alpha/(1-alpha) p(v), written to stay finite
        else:
            rate = (-da / a) * out.exp()  # sigma' s_v
        rate = torch.where((zs == MASK)[..., None], rate, torch.zeros_like(rate))
    else:
        if isinstance(fam.parameterization, MeanParameterization):
            xbar = N * a * out.exp() + (1 - a)
            s = xbar / xbar.gather(-1, zs[..., None])
        else:
            s = out.exp()
        rate = (-da / a) / N * s  # fwd(v -> z) = sigma'/N
        rate = rate.scatter(-1, zs[..., None], 0.0)  # no self-transition
    G = torch.zeros(len(zs), len(zs), dtype=torch.float64)
    src = torch.arange(len(zs))
    for pos in range(L):
        for v in A:
            zn = zs.clone()
            zn[:, pos] = v
            G.index_put_((src, zn[:, 0] * K + zn[:, 1]), rate[:, pos, v], accumulate=True)
    G.fill_diagonal_(0.0)
    return G - torch.diag(G.sum(1))


def exact_model_nll(fam: Family, model: nn.Module) -> dict[tuple, float]:
    """-log p_theta(x) for every clean x: the reverse CTMC from its prior at t = 1 to t = 0 by the exponential
    midpoint rule, on a grid that is geometric towards both ends (absorbing rates grow like 1/t near 0)."""
    zs = states(fam.process.absorbing)
    p = torch.zeros(len(zs), dtype=torch.float64)
    prior = (zs == MASK).all(-1) if fam.process.absorbing else torch.ones(len(zs), dtype=torch.bool)
    p[prior] = 1.0 / prior.sum()
    ends = np.geomspace(1e-10, 0.02, 250)
    grid = np.unique(np.concatenate([[0.0], ends, np.linspace(0.02, 0.98, 500), 1.0 - ends, [1.0]]))[::-1]
    for hi, lo in zip(grid[:-1], grid[1:], strict=True):
        G = model_rates(fam, model, 0.5 * (hi + lo))
        p = p @ torch.linalg.matrix_exp(G * (hi - lo))
    assert abs(float(p.sum()) - 1.0) < 1e-8  # a distribution over all states
    # A SEDD-absorbing model (unnormalised scores) may leave some mass on masked states at t = 0; the ELBO bounds
    # the probability of ending at the clean x all the same.
    clean = ~(zs == MASK).any(-1)
    return {tuple(z.tolist()): -math.log(float(p[i])) for i, z in enumerate(zs) if clean[i]}


def data_distribution(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(N**L, generator=g, dtype=torch.float64) + 0.05
    return p / p.sum()


def perturbed(fn, seed: int, scale: float):
    """A fixed tabular perturbation of a denoiser: a model near, but not at, the exact one."""
    g = torch.Generator().manual_seed(seed)
    noise = scale * torch.randn(V**L, L, V, generator=g, dtype=torch.float64)
    return lambda x, t: fn(x, t) + noise[x[:, 0] * V + x[:, 1]]


# ---- hand computations ----------------------------------------------------------------------------------------
def test_uniform_losses_equal_hand_computation():
    proc = _process("uniform", 1e-3)
    t = torch.tensor([0.3], dtype=torch.float64)
    a = 1.0 - (1.0 - 1e-3) * 0.3
    rate = (1.0 - 1e-3) / a  # sigma'(t) = -alpha'/alpha
    x0, z = torch.tensor([[1]]), torch.tensor([[2]])
    logits = torch.tensor([[[0.3, -1.0, 0.8, 5.0]]], dtype=torch.float64)  # the mask logit is never used
    # mean parameterisation (UDLM): s_y = xbar_theta_y / xbar_theta_z, r_y = xbar_y / xbar_z
    p = np.exp(logits[0, 0, :3].numpy()) / np.exp(logits[0, 0, :3].numpy()).sum()
    xbar_t = N * a * p + (1 - a)
    xbar = N * a * np.eye(3)[1] + (1 - a)
    hand = sum(xbar_t[y] / xbar_t[2] - xbar[y] / xbar[2] + xbar[y] / xbar[2] * math.log((xbar[y] / xbar[2])
               / (xbar_t[y] / xbar_t[2])) for y in (0, 1)) * rate / N
    fam = Family(proc, MeanParameterization())
    got = fam.parameterization.loss(proc, fam.output(logits, z, t), x0, z, t)
    torch.testing.assert_close(got, torch.tensor([[hand]], dtype=torch.float64), rtol=1e-12, atol=0)
    # score parameterisation (SEDD-uniform): s_y = exp(logit_y) for y != z
    s = np.exp(logits[0, 0, :3].numpy())
    hand = sum(s[y] - (xbar[y] / xbar[2]) * math.log(s[y]) + (xbar[y] / xbar[2]) * (math.log(xbar[y] / xbar[2]) - 1)
               for y in (0, 1)) * rate / N
    fam = Family(proc, ScoreParameterization())
    got = fam.parameterization.loss(proc, fam.output(logits, z, t), x0, z, t)
    torch.testing.assert_close(got, torch.tensor([[hand]], dtype=torch.float64), rtol=1e-12, atol=0)


def test_absorbing_score_entropy_equals_hand_computation():
    proc = _process("absorbing", 1e-3)
    t = torch.tensor([0.6], dtype=torch.float64)
    a = 1.0 - (1.0 - 1e-3) * 0.6
    sigma, rate = -math.log(a), (1.0 - 1e-3) / a
    x0, z = torch.tensor([[0, 2]]), torch.tensor([[MASK, 2]])  # position 1 is unmasked: no loss there
    logits = torch.tensor([[[0.5, -0.2, 1.1, 9.0], [3.0, 3.0, 3.0, 3.0]]], dtype=torch.float64)
    s = np.exp(logits[0, 0, :3].numpy() - math.log(math.expm1(sigma)) - math.log(N))
    r = a / (1 - a)  # q_t(x0) / q_t(mask)
    hand = rate * (s.sum() - r * math.log(s[0]) + r * math.log(r) - r)
    fam = Family(proc, ScoreParameterization())
    got = fam.parameterization.loss(proc, fam.output(logits, z, t), x0, z, t)
    torch.testing.assert_close(got, torch.tensor([[hand, 0.0]], dtype=torch.float64), rtol=1e-12, atol=0)


def test_absorbing_mean_parameterisation_is_mdlm():
    """Family(absorbing, mean) with MDLM's alphabet (all but the mask) reproduces mdlm_nelbo draw for draw."""
    from seqdiff.backbones import Transformer
    from seqdiff.diffusion import mdlm_nelbo
    from seqdiff.diffusion.families import absorbing_family

    torch.manual_seed(0)
    m = Transformer(10, 16, d_model=16, n_layers=1, n_heads=2, d_cond=16)
    s = LogLinearSchedule()
    x0 = torch.randint(0, 5, (3, 16))
    t = torch.tensor([0.2, 0.5, 0.9])
    a = absorbing_family(s, 10, 6).nelbo(m, x0, t, generator=torch.Generator().manual_seed(1))
    b = mdlm_nelbo(m, x0, s, t, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # same draws and ops; tolerance for float reordering


# ---- exact likelihoods ----------------------------------------------------------------------------------------
CASES = [("uniform", "mean", 1e-3), ("uniform", "score", 1e-3), ("absorbing", "mean", 0.0),
         ("absorbing", "score", 0.0)]


@pytest.mark.parametrize("kind,param,eps", CASES)
def test_nelbo_is_an_upper_bound_on_the_exact_nll(kind, param, eps):
    proc = _process(kind, eps)
    fam = Family(proc, PARAMS[param]())
    # near the exact denoiser, so the bound is nearly tight and a loss that is too small would show
    model = Table(perturbed(exact_denoiser(data_distribution(1), proc, param), seed=2, scale=0.3))
    nll = exact_model_nll(fam, model)
    gaps = [exact_nelbo(fam, model, torch.tensor(x)) - v for x, v in nll.items()]
    # quadrature and ODE errors are below 1e-4 nats (checked against grids 4x coarser)
    assert min(gaps) > -1e-4, gaps
    assert max(gaps) > 1e-3, "a perturbed model should not be exact"


@pytest.mark.parametrize("kind,param", [(k, p) for k, p, _ in CASES])
def test_nelbo_of_the_exact_denoiser_is_the_data_nll(kind, param):
    proc = _process(kind, 0.0)  # alpha(1) = 0: the prior is exactly q_1
    p_data = data_distribution(3)
    fam = Family(proc, PARAMS[param]())
    model = Table(exact_denoiser(p_data, proc, param))
    for i, x in enumerate(states(False)[:4]):  # 4 of the 9 sequences keep the test short
        got = exact_nelbo(fam, model, x)
        assert abs(got - (-math.log(float(p_data[i])))) < 2e-3, (x, got, -math.log(float(p_data[i])))

"""Noise processes (continuous-time Markov chains on tokens): absorbing (MDLM, SEDD-absorb) and uniform (UDLM,
SEDD-uniform). Pure math on tensors: no model calls, no Lightning.

Notation (one position; the process acts on every position independently). The alphabet A holds the N token
ids the process moves between (ids outside A - pad, bos, ... - never occur in xt). alpha(t) comes from a
`Schedule`; sigma(t) = -log alpha(t) is the total noise and sigma'(t) = -alpha'(t)/alpha(t) its rate.

Absorbing: q_t(. | x0) = alpha_t e_{x0} + (1 - alpha_t) e_m (m = mask). Forward rate y -> m is sigma'(t).
Uniform:   q_t(. | x0) = alpha_t e_{x0} + (1 - alpha_t) / N,  i.e. rate y -> z (z != y) is sigma'(t) / N
           (Q = sigma' (11^T / N - I): the D3PM uniform transition in continuous time).

The continuous-time ELBO (Campbell et al. 2022; SEDD, Lou et al. 2024, eq. 11) of a reverse CTMC whose rates
are R_theta(z -> y) = fwd(y -> z) s_theta(z)_y, with s_theta(z)_y ~ p_t(y) / p_t(z) (the "concrete score"):

    -log p_theta(x0) <= KL(q_1(. | x0) || prior)
                        + int_0^1 E_{z ~ q_t(.|x0)} sum_{y != z} fwd(y -> z) [s_y - r_y log s_y + r_y log r_y - r_y] dt,

with r_y = q_t(y | x0) / q_t(z | x0) the true ratio. The bracket is the Bregman divergence of x log x, so every
term is >= 0 and vanishes iff s = r. Processes implement it for the two parameterisations:

- `mean_nelbo(log_p_x0, ...)`: s derived from a clean-token prediction p_theta(x0 | z) by Bayes' rule,
  s_y = p_theta-marginal_t(y) / p_theta-marginal_t(z). Absorbing gives MDLM's -alpha'/(1-alpha) (-log p(x0))
  at masked positions; uniform gives UDLM's (Schiff et al. 2025, eq. 18) closed form, see `UniformProcess`.
- `score_entropy(log_s, ...)`: s given directly (SEDD's denoising score entropy).

Sampler steps from t to s < t, per position: `posterior_log_probs` (ancestral: the exact q(z_s | z_t, x0) with
x0 ~ p_theta, i.e. Bayes with p_theta as the prior on x0) and `tweedie_log_probs` (SEDD's Tweedie tau-leaping:
p(z_s = y | z_t) ~ [exp(-(sigma_t - sigma_s) Q) s]_y * exp((sigma_t - sigma_s) Q)(z_t | y), which equals the
ancestral step when s is the score of a clean-token prediction). Both return log-probabilities (B, L, V) with
-inf on states the process cannot reach. The last step (s <= 0) uses alpha_s = 1: every token is clean after it.

Where alpha(1) > 0 (eps > 0) an absorbing model's prior term KL(q_1 || all-mask) is infinite and is dropped,
as MDLM and SEDD do; with alpha(1) = 0 (LogLinearSchedule(eps=0)) the absorbing ELBO is exact. The uniform
prior term is finite and is included (`prior_kl`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from seqdiff.device import multinomial, rand, randint
from seqdiff.noise.masking import add_noise as mask_tokens
from seqdiff.noise.schedules import Schedule


def _col(x: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1) for broadcasting over (B, L, V)."""
    return x.reshape(-1, 1, 1)


def _f(x: Tensor) -> Tensor:
    """At least float32 (bf16/fp16 network outputs are promoted); float64 stays float64 (exact tests)."""
    return x if x.dtype == torch.float64 else x.float()


class NoiseProcess:
    """Shared state: schedule, vocabulary size, alphabet (ids the process moves between) and the mask id."""

    absorbing: bool = False

    def __init__(self, schedule: Schedule, vocab_size: int, alphabet: Sequence[int], mask_id: int) -> None:
        alphabet = sorted({int(a) for a in alphabet})
        if not alphabet or alphabet[0] < 0 or alphabet[-1] >= vocab_size:
            raise ValueError(f"alphabet must be non-empty ids in [0, {vocab_size}), got {alphabet[:10]}")
        if mask_id in alphabet:
            raise ValueError(f"the mask token {mask_id} cannot be in the noise alphabet")
        self.schedule, self.vocab_size, self.mask_id = schedule, int(vocab_size), int(mask_id)
        self.alphabet = torch.tensor(alphabet, dtype=torch.long)
        self.N = len(alphabet)
        in_a = torch.zeros(vocab_size, dtype=torch.bool)
        in_a[self.alphabet] = True
        self.in_alphabet = in_a  # (V,) bool

    # ---- schedule helpers -------------------------------------------------------------------------------------
    def alpha(self, t: Tensor) -> Tensor:
        return self.schedule.alpha(t)

    def alpha_at(self, t: float, device=None) -> float:
        """alpha as a python float; the last step (t <= 0) is clean: alpha = 1."""
        return 1.0 if t <= 0.0 else float(self.schedule.alpha(torch.tensor(t, dtype=torch.float64)))

    def rate(self, t: Tensor) -> Tensor:
        """sigma'(t) = -alpha'(t) / alpha(t) (B,)."""
        return -self.schedule.dalpha(t) / self.schedule.alpha(t).clamp_min(1e-30)

    def loss_mask(self, x0: Tensor) -> Tensor:
        """Positions the process noises and scores: tokens in the alphabet (padding is never in it)."""
        return self.in_alphabet.to(x0.device)[x0]

    def restrict_alphabet(self, log_p: Tensor) -> Tensor:
        """-inf outside the alphabet, log-softmax over it: a clean-token prediction (B, L, V)."""
        keep = self.in_alphabet.to(log_p.device)
        return _f(log_p).masked_fill(~keep, -torch.inf).log_softmax(-1)

    def config(self) -> dict:
        return {"_target_": f"{type(self).__module__}.{type(self).__name__}", "schedule": self.schedule.config(),
                "vocab_size": self.vocab_size, "alphabet": self.alphabet.tolist(), "mask_id": self.mask_id}

    # ---- interface --------------------------------------------------------------------------------------------
    def add_noise(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None,
                  maskable: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def start(self, x: Tensor, allowed: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        """x (B, L): mask = to generate, anything else = given. Returns the t = 1 state (given tokens kept)."""
        raise NotImplementedError  # pragma: no cover - interface

    def done(self, x: Tensor) -> bool:
        """Whether the reverse process can stop early (nothing left to denoise)."""
        return False

    def prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q_1(. | x0) || prior) per position (B, L) in nats."""
        return torch.zeros(x0.shape, device=x0.device)


class AbsorbingProcess(NoiseProcess):
    """Masking: each token becomes [MASK] at rate sigma'(t); masked tokens stay masked.

    mean_nelbo = -alpha'(t) / (1 - alpha(t)) * -log p_theta(x0 | z) at masked positions (MDLM eq. 10).
    score_entropy (SEDD), at a masked position with true ratio r = alpha / (1 - alpha) = 1 / expm1(sigma) at
    y = x0 and 0 elsewhere: sigma'(t) [sum_{y in A} s_y - r log s_{x0} + r log r - r]; unmasked positions: 0.
    """

    absorbing = True

    def add_noise(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None,
                  maskable: Tensor | None = None) -> Tensor:
        # the same draws as seqdiff.noise.add_noise (and so as mdlm_nelbo) for the same generator
        return mask_tokens(x0, self.alpha(t), self.mask_id, generator=generator, maskable=maskable)

    def start(self, x: Tensor, allowed: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        return x.clone()  # the absorbing prior is all-mask: positions to generate already hold the mask

    def done(self, x: Tensor) -> bool:
        return not bool((x == self.mask_id).any())

    def mean_nelbo(self, log_p_x0: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        nll = -log_p_x0.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
        weight = self.schedule.loss_weight(t)[:, None]
        return torch.where(xt == self.mask_id, weight * nll, torch.zeros_like(nll))

    def score_entropy(self, log_s: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        a = self.alpha(t).double()
        r = (a / (1.0 - a).clamp_min(1e-30)).to(_f(log_s).dtype)[:, None]  # (B, 1) true ratio at y = x0
        s_sum = log_s.exp().sum(-1)  # (B, L) over the alphabet (log_s is -inf elsewhere)
        log_s_x0 = log_s.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        term = s_sum - r * log_s_x0 + torch.xlogy(r, r) - r
        return torch.where(xt == self.mask_id, self.rate(t)[:, None] * term, torch.zeros_like(term))

    def log_score(self, logits: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """SEDD's absorbing parameterisation: log s_y = logits_y - log expm1(sigma_t) - log N on the alphabet,
        so exp(logits) ~ p(x0 = y | z) at a masked position (unnormalised)."""
        sigma = -torch.log(self.alpha(t).double().clamp_min(1e-30))
        logits = _f(logits)
        shift = (torch.log(torch.expm1(sigma.clamp_min(1e-6))) + math.log(self.N)).to(logits.dtype)
        keep = self.in_alphabet.to(logits.device)
        return (logits - _col(shift)).masked_fill(~keep, -torch.inf)

    def clean_log_probs(self, logits: Tensor, xt: Tensor) -> Tensor:
        """p_theta(x0 | z) over the alphabet; unmasked positions are carried over (SUBS)."""
        log_p = self.restrict_alphabet(logits)
        unmasked = (xt != self.mask_id).unsqueeze(-1)
        carry = torch.full_like(log_p, -torch.inf).scatter_(-1, xt.unsqueeze(-1), 0.0)
        return torch.where(unmasked, carry, log_p)

    def _stay(self, log_q: Tensor, xt: Tensor) -> Tensor:
        """Unmasked tokens never change: a point mass on the current token."""
        carry = torch.full_like(log_q, -torch.inf).scatter_(-1, xt.unsqueeze(-1), 0.0)
        return torch.where((xt != self.mask_id).unsqueeze(-1), carry, log_q)

    def posterior_log_probs(self, log_p_x0: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        """Masked: unmask to y w.p. (alpha_s - alpha_t)/(1 - alpha_t) p(y), stay masked w.p. (1-alpha_s)/(1-alpha_t)."""
        a_t, a_s = self.alpha_at(t), self.alpha_at(s)
        log_q = _f(log_p_x0) + math.log(max(a_s - a_t, 1e-300) / (1.0 - a_t))
        log_q[..., self.mask_id] = math.log((1.0 - a_s) / (1.0 - a_t)) if a_s < 1.0 else -math.inf
        return self._stay(log_q, xt)

    def tweedie_log_probs(self, log_s: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        """Masked: y w.p. (alpha_s/alpha_t - 1) s_y, mask w.p. 1 - (alpha_s/alpha_t - 1) sum_y s_y (clipped at 0);
        the mask is dropped at the last step (SEDD's final denoising step)."""
        a_t, a_s = self.alpha_at(t), self.alpha_at(s)
        c = a_s / a_t - 1.0  # exp(sigma_t - sigma_s) - 1
        q = c * log_s.double().exp()  # (B, L, V), 0 outside the alphabet
        stay = (1.0 - q.sum(-1)).clamp_min(0.0) if s > 0.0 else torch.zeros_like(q[..., 0])
        q[..., self.mask_id] = stay
        return self._stay(q.log().to(_f(log_s).dtype), xt)


class UniformProcess(NoiseProcess):
    """Uniform noise over the alphabet: each token is redrawn uniformly at rate sigma'(t) (it may change many
    times); q_t(. | x0) = alpha_t e_{x0} + (1 - alpha_t) / N, so the t = 1 prior is uniform over the alphabet.

    With xbar = N alpha_t e_{x0} + (1 - alpha_t) 1 (proportional to q_t(. | x0)) and xbar_theta = N alpha_t
    p_theta(. | z) + (1 - alpha_t) 1, the true ratio is r_y = xbar_y / xbar_z, the model's s_y = xbar_theta_y /
    xbar_theta_z, and the ELBO integrand at a position holding z is (UDLM, with sum_y xbar_y = N):

        sigma'(t)/N [ N/xbar_theta_z - N/xbar_z
                      + sum_y (xbar_y / xbar_z) log(xbar_y xbar_theta_z / (xbar_z xbar_theta_y)) ].

    score_entropy uses the same sum with s_y = exp(network output) for y != z (SEDD-uniform).
    """

    def add_noise(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None,
                  maskable: Tensor | None = None) -> Tensor:
        a = self.alpha(t).reshape(-1, 1).float()
        u = rand(x0.shape, generator, x0.device)  # on the generator's device (seqdiff.device)
        draw = randint(self.N, x0.shape, generator, x0.device)
        redraw = u >= a  # P = 1 - alpha_t; the redraw may return the same token
        if maskable is not None:
            redraw &= maskable
        return torch.where(redraw, self.alphabet.to(x0.device)[draw], x0)

    def start(self, x: Tensor, allowed: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        """Positions to generate (mask) get a uniform draw from the alphabet, restricted to `allowed` (L, V)."""
        B, L = x.shape
        ok = self.in_alphabet.to(x.device).expand(L, -1)
        if allowed is not None:
            ok = ok & allowed[:, : self.vocab_size].to(x.device)
        todo = x == self.mask_id
        empty = (~ok.any(-1)) & todo.any(0)
        if empty.any():
            raise ValueError(f"position(s) {empty.nonzero().flatten().tolist()[:10]} allow no token of the noise "
                             f"alphabet {self.alphabet.tolist()}")
        weights = ok.double().expand(B, L, -1).reshape(B * L, -1)
        weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, torch.ones_like(weights))
        draw = multinomial(weights, 1, generator).view(B, L)
        return torch.where(todo, draw, x)

    def _log_xbar(self, log_p: Tensor, t: Tensor) -> Tensor:
        """log(N alpha_t p + 1 - alpha_t) (B, L, V) for log_p (B, L, V) (-inf outside A) and times t (B,)."""
        a = self.alpha(t).double().clamp(0.0, 1.0)
        log_p = _f(log_p)
        log_a = _col(torch.log(self.N * a)).to(log_p.dtype)
        log_1ma = _col(torch.log1p(-a)).to(log_p.dtype)  # -inf at alpha = 1: then xbar = N p
        out = torch.logaddexp(log_a + log_p, log_1ma.expand_as(log_p))
        return out.masked_fill(~self.in_alphabet.to(log_p.device), -torch.inf)

    def _log_xbar_true(self, x0: Tensor, t: Tensor) -> Tensor:
        onehot = torch.full(x0.shape + (self.vocab_size,), -torch.inf, device=x0.device, dtype=_f(t).dtype)
        onehot.scatter_(-1, x0.unsqueeze(-1), 0.0)
        return self._log_xbar(onehot, t)

    def _others(self, xt: Tensor) -> Tensor:
        """(B, L, V) bool: alphabet tokens other than the current one (the y of sum_{y != z})."""
        other = self.in_alphabet.to(xt.device).expand(*xt.shape, -1).clone()
        return other.scatter_(-1, xt.unsqueeze(-1), False)

    def _bregman(self, log_s: Tensor, log_r: Tensor, xt: Tensor, t: Tensor, lin: Tensor | None = None) -> Tensor:
        """sigma'/N sum_{y in A, y != z} [s - r log s + r log r - r] (B, L) from log ratios (B, L, V).

        lin: the closed form of sum_{y != z} (s_y - r_y) when known (mean parameterisation), else summed."""
        other = self._others(xt)
        log_s = log_s.masked_fill(~other, 0.0)  # keep -inf out of the arithmetic (and out of the gradients)
        r = log_r.masked_fill(~other, -torch.inf).exp()
        term = torch.xlogy(r, r) - r * log_s
        if lin is None:
            term = term + torch.where(other, log_s.exp() - r, torch.zeros_like(r))
        total = term.sum(-1) if lin is None else term.sum(-1) + lin
        return (self.rate(t) / self.N).to(total.dtype)[:, None] * total

    def mean_nelbo(self, log_p_x0: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        lx, lxt = self._log_xbar_true(x0, t), self._log_xbar(log_p_x0, t)
        z = xt.unsqueeze(-1)
        lx_z, lxt_z = lx.gather(-1, z), lxt.gather(-1, z)
        # sum_{y != z} (s_y - r_y) = N / xbar_theta_z - N / xbar_z, since sum_y xbar_y = sum_y xbar_theta_y = N
        lin = self.N * (torch.exp(-lxt_z) - torch.exp(-lx_z)).squeeze(-1)
        return self._bregman(lxt - lxt_z, lx - lx_z, xt, t, lin=lin)

    def score_entropy(self, log_s: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        lx = self._log_xbar_true(x0, t)
        return self._bregman(log_s, lx - lx.gather(-1, xt.unsqueeze(-1)), xt, t)

    def log_score(self, logits: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """SEDD-uniform: log s_y = logits_y on the alphabet (-inf elsewhere), log s_z = 0 at the current token."""
        keep = self.in_alphabet.to(logits.device)
        log_s = _f(logits).masked_fill(~keep, -torch.inf)
        return log_s.scatter(-1, xt.unsqueeze(-1), 0.0)

    def clean_log_probs(self, logits: Tensor, xt: Tensor) -> Tensor:
        return self.restrict_alphabet(logits)

    def prior_kl(self, x0: Tensor) -> Tensor:
        a1 = self.alpha_at(1.0)
        p1, p0 = a1 + (1.0 - a1) / self.N, (1.0 - a1) / self.N
        kl = p1 * math.log(self.N * p1) + (self.N - 1) * (p0 * math.log(self.N * p0) if p0 > 0 else 0.0)
        return torch.full(x0.shape, kl, device=x0.device)

    def posterior_log_probs(self, log_p_x0: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        """q(z_s = y | z_t = z, x0 ~ p) ~ [alpha_s p_y + (1 - alpha_s)/N]
        [alpha_{t|s} 1(y = z) + (1 - alpha_{t|s})/N]."""
        a_t, a_s = self.alpha_at(t), self.alpha_at(s)
        a_ts = a_t / a_s
        keep = self.in_alphabet.to(xt.device)
        log_p_x0 = _f(log_p_x0)
        floor = log_p_x0.new_tensor(math.log1p(-a_s) - math.log(self.N) if a_s < 1 else -math.inf)
        prior_s = torch.logaddexp(math.log(a_s) + log_p_x0, floor)
        lik = torch.full_like(prior_s, math.log1p(-a_ts) - math.log(self.N) if a_ts < 1 else -math.inf)
        stay = math.log(a_ts + (1.0 - a_ts) / self.N)
        lik = lik.scatter(-1, xt.unsqueeze(-1), stay)
        return (prior_s + lik).masked_fill(~keep, -torch.inf).log_softmax(-1)

    def tweedie_log_probs(self, log_s: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        """SEDD's analytic step: [e^{d} s_y + (1 - e^{d})/N sum_w s_w] [e^{-d} 1(y = z) + (1 - e^{-d})/N],
        d = sigma_t - sigma_s."""
        a_t, a_s = self.alpha_at(t), self.alpha_at(s)
        e = a_s / a_t  # exp(d) >= 1
        keep = self.in_alphabet.to(xt.device)
        sc = log_s.double().exp()  # (B, L, V), s_z = 1, 0 outside the alphabet
        stag = e * sc + (1.0 - e) / self.N * sc.sum(-1, keepdim=True)
        trans = torch.full_like(stag, (1.0 - 1.0 / e) / self.N)
        trans = trans.scatter(-1, xt.unsqueeze(-1), 1.0 / e + (1.0 - 1.0 / e) / self.N)
        q = (stag * trans).clamp_min(0.0).masked_fill(~keep, 0.0)
        total = q.sum(-1, keepdim=True)
        q = torch.where(total > 0, q, keep.double().expand_as(q))  # degenerate scores: uniform over the alphabet
        return (q / q.sum(-1, keepdim=True)).log().to(_f(log_s).dtype)

"""Remasking sampler: ReMDM-style remasking of decoded tokens, with random (default) or LLaDA-style
confidence-ordered choices of which tokens to unmask and remask.

Same contract as `AncestralSampler`: `timesteps(device)` and `step(log_p_x0, xt, t, s, mask_id, generator)`,
driven by `seqdiff.sampling.sample` / `denoise`. Each step from t to s:

1. draw x0 ~ p(x0 | xt) at every masked position and note its probability (the confidence);
2. unmask k of the masked positions, where k keeps the masked fraction on the schedule, (1 - alpha(s)) of
   the free positions: a uniformly random k-subset (`unmask="random"`, the MDLM/ReMDM posterior with the
   count fixed) or the k most confident draws (`unmask="confidence"`, LLaDA's low-confidence remasking);
3. remask r already decoded tokens, r ~ sigma_t * (#decoded), sigma_t = min(eta, (1 - alpha_s) / alpha_t)
   (ReMDM-cap), only while t_off <= t <= t_on: a uniformly random r-subset (`remask="random"`, ReMDM-cap) or
   those whose confidence when decoded was lowest (`remask="confidence"`, ReMDM-conf). Remasked tokens are
   predicted again, with more context. eta = 0 disables remasking.

Why the default is random. Both confidence rules are mode-seeking: ranking positions by the
probability of the token drawn there selects, at every step, the positions whose draw was the likeliest
base in its context, and remasking the least likely ones redraws exactly the tokens that make a sequence
diverse. The output distribution is tilted towards high-likelihood, low-complexity sequence. On text that
trade (like a lower temperature) helps; DNA is high-entropy (~1.9 bits/base: per-position distributions are
flat and the likeliest sequences are A/T runs), so it collapses. With an *exact* denoiser (a Markov chain's
posterior, `seqdiff.dna.markov_oracle`), 8 steps, 256 bp, LLaDA ordering gives GC 4% and a per-sequence
3-mer entropy of 1.4 bits (real DNA: 44%, 5.5 bits; ancestral: 43%, 5.7); temperature 2 does not help (the
ranking still favours the majority base); confidence remasking alone (random unmasking) drifts the same way,
faster with larger eta and more steps. Random unmasking and random remasking keep the marginals (ReMDM's
sigma_t does not depend on the tokens) and match ancestral sampling. `scripts/benchmark_remasking.py`
reproduces this (docs/families.md). Do not use the confidence rules for DNA or wherever sample diversity
is the goal.

Never remasked: any token that was already unmasked at the first step of a trajectory. That covers the
fixed tokens of `Constraints` (written by the loop before the first step), the context of a
semi-autoregressive block, and any tokens given to `denoise` for infilling. `fixed` (BoolTensor[L] or
Constraints) adds positions explicitly, for callers that drive `step` themselves.

The sampler keeps per-trajectory state (decode-time confidences), reset when a step starts at t = 1, so one
instance serves many `denoise` calls in turn but not two interleaved trajectories.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqdiff.device import rand
from seqdiff.noise import LogLinearSchedule, Schedule
from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.samplers import GridSampler


def _stochastic_round(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Round a float tensor up with probability equal to its fractional part (unbiased)."""
    u = rand(x.shape, generator, x.device, torch.float64)
    return (x.floor() + (u < (x - x.floor())).double()).long()


def _top_k_mask(scores: Tensor, k: Tensor) -> Tensor:
    """(B, L) bool: for each row b, the k[b] highest scores (-inf scores are never chosen)."""
    order = scores.argsort(dim=-1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return (ranks < k[:, None]) & torch.isfinite(scores)


ORDERS = ("random", "confidence")


class RemaskingSampler(GridSampler):
    """Unmasking on the schedule with ReMDM-cap remasking, on `num_steps` steps.

    eta: remasking strength (the ReMDM-cap sigma), 0 disables remasking. t_on, t_off: remask only while t is
    in [t_off, t_on] (ReMDM remasks in the middle of the trajectory, not at the very start or end).
    temperature: applied to the log-probs before drawing and scoring (1 = the model's distribution).
    unmask, remask: "random" (distribution-preserving, the default) or "confidence" (LLaDA / ReMDM-conf:
    mode-seeking, collapses DNA to low-complexity repeats; see the module docstring).
    """

    def __init__(self, schedule: Schedule | None = None, num_steps: int = 128, eta: float = 0.05,
                 t_on: float = 0.9, t_off: float = 0.1, temperature: float = 1.0,
                 fixed: Tensor | Constraints | None = None, unmask: str = "random",
                 remask: str = "random") -> None:
        super().__init__(num_steps)
        if unmask not in ORDERS or remask not in ORDERS:
            raise ValueError(f"unmask and remask must be one of {ORDERS}, got {unmask!r}, {remask!r}")
        self.unmask, self.remask = unmask, remask
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if not 0.0 <= t_off <= t_on <= 1.0:
            raise ValueError(f"need 0 <= t_off <= t_on <= 1, got t_off={t_off}, t_on={t_on}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.schedule = schedule or LogLinearSchedule()
        self.eta, self.t_on, self.t_off, self.temperature = eta, t_on, t_off, temperature
        if isinstance(fixed, Constraints):
            fixed = fixed.fixed >= 0
        self.fixed = None if fixed is None else fixed.bool()
        self._frozen: Tensor | None = None  # (B, L) tokens never remasked in the current trajectory
        self._conf: Tensor | None = None  # (B, L) decode-time probability of each decoded token

    def _start(self, xt: Tensor, mask_id: int) -> None:
        frozen = xt != mask_id
        if self.fixed is not None:
            if self.fixed.shape[-1] != xt.shape[-1]:
                raise ValueError(f"RemaskingSampler.fixed covers {self.fixed.shape[-1]} positions but the "
                                 f"sequence has {xt.shape[-1]} (tokens given at the start are frozen anyway)")
            frozen = frozen | self.fixed.to(xt.device)
        self._frozen = frozen
        self._conf = torch.ones(xt.shape, dtype=torch.float64, device=xt.device)

    @staticmethod
    def _uniform(shape, generator: torch.Generator | None, device) -> Tensor:
        """i.i.d. U(0, 1) scores: top-k of them is a uniformly random k-subset."""
        return rand(shape, generator, device, torch.float64)

    def step(self, log_p_x0: Tensor, xt: Tensor, t: float, s: float, mask_id: int,
             generator: torch.Generator | None = None) -> Tensor:
        if t >= 1.0 or self._frozen is None or self._frozen.shape != xt.shape:
            self._start(xt, mask_id)
        frozen, conf = self._frozen, self._conf
        masked = xt == mask_id  # (B, L)
        if frozen.any() and (masked & frozen).any():
            raise ValueError("a frozen (fixed) position is masked: fixed tokens must be in place before step 1")

        from seqdiff.sampling.samplers import sample_categorical

        log_p = log_p_x0 / self.temperature if self.temperature != 1.0 else log_p_x0
        x0 = sample_categorical(log_p, generator)  # (B, L)
        p_x0 = log_p.double().log_softmax(-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1).exp()  # (B, L)

        free = ~frozen
        n_free = free.sum(-1).double()  # (B,)
        n_masked = masked.sum(-1)
        a_t = float(self.schedule.alpha(torch.tensor(t, dtype=torch.float64)))
        a_s = float(self.schedule.alpha(torch.tensor(s, dtype=torch.float64))) if s > 0 else 1.0
        target = torch.zeros_like(n_masked) if s <= 0 else _stochastic_round((1.0 - a_s) * n_free, generator)
        target = torch.minimum(target, n_masked)  # masks left after this step (never more than now)

        # Remask r low-confidence decoded tokens (ReMDM-cap), only while t is inside the remasking window.
        decoded = ~masked & free
        r = torch.zeros_like(n_masked)
        if self.eta > 0 and s > 0 and self.t_off <= t <= self.t_on and a_t > 0:
            sigma = min(self.eta, (1.0 - a_s) / a_t)
            r = torch.minimum(_stochastic_round(sigma * decoded.sum(-1).double(), generator), target)
        rem_score = -conf if self.remask == "confidence" else self._uniform(conf.shape, generator, conf.device)
        remask = _top_k_mask(torch.where(decoded, rem_score, -torch.inf), r)

        k = n_masked - target + r  # unmask k so that masked count becomes target after remasking r
        un_score = p_x0 if self.unmask == "confidence" else self._uniform(p_x0.shape, generator, p_x0.device)
        unmask = _top_k_mask(torch.where(masked, un_score, -torch.inf), k)

        x = torch.where(unmask, x0, xt)
        x = torch.where(remask, torch.full_like(x, mask_id), x)
        self._conf = torch.where(unmask, p_x0, torch.where(remask, torch.ones_like(conf), conf))
        return x

"""Diffusion families: a noise process (seqdiff.noise.processes) x a parameterisation of the network's output.
Pure functions and plain objects (no Lightning); the LightningModule is `seqdiff.diffusion.family_lightning`.

| family         | process          | parameterisation      | loss (per token, nats)         | sampler step        |
|----------------|------------------|-----------------------|--------------------------------|---------------------|
| MDLM           | AbsorbingProcess | MeanParameterization  | -alpha'/(1-alpha) (-log p(x0)) | ancestral posterior |
| UDLM           | UniformProcess   | MeanParameterization  | UDLM's closed-form ELBO        | ancestral posterior |
| SEDD-absorbing | AbsorbingProcess | ScoreParameterization | denoising score entropy        | Tweedie tau-leaping |
| SEDD-uniform   | UniformProcess   | ScoreParameterization | denoising score entropy        | Tweedie tau-leaping |

All four losses are the same continuous-time ELBO integrand (the equations are in seqdiff/noise/processes.py),
differing only in how the network's output gives the ratio s_theta(z)_y ~ p_t(y) / p_t(z): through a clean-token
distribution (mean) or directly (score). `Family.nelbo` returns that integrand at time t (plus the prior term
KL(q_1 || prior) / per token) for every position; averaging over t ~ U[eps, 1] (antithetic, as MDLM) and over
positions estimates nats per token, an upper bound on the NLL up to MDLM's O(eps) truncation of t < eps.

Positions outside the process's alphabet (padding) carry no loss and are never noised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqdiff.noise.processes import NoiseProcess


def _target(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


class MeanParameterization:
    """The network predicts clean tokens, p_theta(x0 | z_t) (MDLM, UDLM). Sampling: the exact posterior
    q(z_s | z_t, x0 ~ p_theta) (ancestral)."""

    def output(self, process: NoiseProcess, logits: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return process.clean_log_probs(logits, xt)

    def loss(self, process: NoiseProcess, out: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return process.mean_nelbo(out, x0, xt, t)

    def transition(self, process: NoiseProcess, out: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        return process.posterior_log_probs(out, xt, t, s)

    def restrict(self, out: Tensor, allowed: Tensor | None, xt: Tensor) -> Tensor:
        """Condition the clean-token prediction on the allowed alphabets (L, V), renormalised."""
        if allowed is None:
            return out
        out = out.masked_fill(~allowed[:, : out.shape[-1]], -torch.inf)
        return out - torch.logsumexp(out, -1, keepdim=True)

    def config(self) -> dict:
        return {"_target_": _target(self)}


class ScoreParameterization:
    """The network predicts log concrete scores log s_theta(z)_y (SEDD); trained by denoising score entropy,
    sampled by Tweedie tau-leaping."""

    def output(self, process: NoiseProcess, logits: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return process.log_score(logits, xt, t)

    def loss(self, process: NoiseProcess, out: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return process.score_entropy(out, x0, xt, t)

    def transition(self, process: NoiseProcess, out: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        return process.tweedie_log_probs(out, xt, t, s)

    def restrict(self, out: Tensor, allowed: Tensor | None, xt: Tensor) -> Tensor:
        """Zero the scores of disallowed tokens (the current token keeps s_z = 1)."""
        if allowed is None:
            return out
        keep = allowed[:, : out.shape[-1]].expand_as(out).clone()
        keep.scatter_(-1, xt.unsqueeze(-1), True)
        return out.masked_fill(~keep, -torch.inf)

    def config(self) -> dict:
        return {"_target_": _target(self)}


def call_backbone(backbone: nn.Module, xt: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
    """backbone(xt, t), passing class labels (B,) to a class-conditional backbone when given."""
    return backbone(xt, t) if labels is None else backbone(xt, t, y=labels)


@dataclass
class Family:
    """A noise process and a parameterisation: everything training, likelihood and sampling need."""

    process: NoiseProcess
    parameterization: MeanParameterization | ScoreParameterization
    name: str = "family"

    @property
    def mask_id(self) -> int:
        return self.process.mask_id

    def output(self, logits: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return self.parameterization.output(self.process, logits, xt, t)

    def transition(self, out: Tensor, xt: Tensor, t: float, s: float) -> Tensor:
        """(B, L, V) log q(z_s | z_t) of one reverse step from t to s."""
        return self.parameterization.transition(self.process, out, xt, t, s)

    def nelbo(self, backbone: nn.Module, x0: Tensor, t: Tensor, loss_mask: Tensor | None = None,
              generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """Per-token NELBO terms in nats (B, L) at times t (B,): ELBO integrand + prior KL; 0 off the loss mask."""
        mask = self.process.loss_mask(x0)
        if loss_mask is not None:
            mask = mask & loss_mask
        xt = self.process.add_noise(x0, t, generator=generator, maskable=mask)
        logits = call_backbone(backbone, xt, t, labels)
        # positions without loss (padding) are given an alphabet token for the loss arithmetic only, so that
        # no inf/nan is ever computed there (it would leak into the gradients through torch.where)
        safe = self.process.alphabet[0].to(x0.device)
        xt_s, x0_s = torch.where(mask, xt, safe), torch.where(mask, x0, safe)
        out = self.output(logits, xt_s, t)
        nats = self.parameterization.loss(self.process, out, x0_s, xt_s, t) + self.process.prior_kl(x0)
        return torch.where(mask, nats, torch.zeros_like(nats))

    def config(self) -> dict:
        return {"name": self.name, "process": self.process.config(),
                "parameterization": self.parameterization.config()}


def absorbing_family(schedule, vocab_size: int, mask_id: int, name: str = "mdlm") -> Family:
    """MDLM as a Family (for checkpoints trained by `DiffusionLM`): absorbing noise, clean-token prediction
    normalised over every token but the mask, exactly as `subs_log_probs` / `mdlm_nelbo` do."""
    from seqdiff.noise.processes import AbsorbingProcess

    alphabet = [i for i in range(vocab_size) if i != mask_id]
    return Family(AbsorbingProcess(schedule, vocab_size, alphabet, mask_id), MeanParameterization(), name)


def alphabet_ids(tokenizer) -> list[int]:
    """Token ids a noise process moves between: every id but the tokenizer's special tokens."""
    names = ("pad_id", "mask_id", "bos_id", "eos_id", "unk_id")
    special = {int(getattr(tokenizer, n)) for n in names if getattr(tokenizer, n, None) is not None}
    return [i for i in range(tokenizer.vocab_size) if i not in special]


def family_of(model) -> Family:
    """The Family of a loaded checkpoint (`seqdiff.load`): its own, or MDLM's for a `DiffusionLM` checkpoint."""
    if model.family is not None:
        return model.family
    if model.objective != "mdlm":
        raise ValueError(f"{model.path} is an '{model.objective}' model, not a diffusion model")
    V = int(getattr(model.backbone, "vocab_size", model.tokenizer.vocab_size))
    return absorbing_family(model.schedule, V, model.tokenizer.mask_id)

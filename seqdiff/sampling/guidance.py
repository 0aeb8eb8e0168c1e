"""Guidance for design: steer a diffusion family's reverse process toward a class y (absorbing or uniform noise).

Both guides reweight the per-position transition q(z_s^l = v | z_t) of one reverse step (`FamilySampler`),
which for small steps is rate-level guidance of the reverse CTMC (Nisonoff et al. 2024; UDLM, Schiff et al.
2025); the sampler then restricts to the allowed alphabets and writes given tokens back, so constraints hold
exactly under any guidance scale.

Classifier-free (a class-conditional denoiser trained with label dropout, `ClassConditionalTransformer`):

    log q_gamma(v) = gamma log q(v | z_t, y) + (1 - gamma) log q(v | z_t)        (renormalised)

gamma = 0 is the unconditional model (unguided), gamma = 1 the conditional model, gamma > 1 sharpens toward y.

Classifier guidance (an unconditional denoiser + `NoisyClassifier` p_phi(y | z_t, t) trained on noised data):

    log q_gamma(v) = log q(v | z_t) + gamma [log p_phi(y | z_t with position l set to v, t) - log p_phi(y | z_t, t)]

`mode="exact"` evaluates the classifier on every single-position change (B x L x N sequences per step);
`mode="taylor"` uses the first-order expansion around z_t (one forward + backward through a one-hot input):
log p(y | z^{l->v}) - log p(y | z) ~ g[l, v] - g[l, z_l], g = d log p(y | onehot(z)) / d onehot.

gamma = 0 returns the unguided transition itself, so guided sampling at scale 0 draws exactly the unguided
sequence for the same seed.

Guidance interval (`interval=(lo, hi)`, as Kynkaanniemi et al. 2024 for images): the scale applies only to reverse
steps that start at a time t in [lo, hi]; outside it classifier-free guidance falls back to the conditional model
(scale 1) and classifier guidance to the unguided step (scale 0). (0, 1), the default, guides every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdiff.sampling.families import StepContext

MODES = ("taylor", "exact")


def geometric_mix(log_c: Tensor, log_u: Tensor, scale: float) -> Tensor:
    """scale * log_c + (1 - scale) * log_u (unnormalised); exactly log_u at scale 0 and log_c at scale 1.
    Entries impossible under either model stay impossible (both come from the same restricted support)."""
    if scale == 0.0:
        return log_u
    if scale == 1.0:
        return log_c
    both = torch.isfinite(log_c) & torch.isfinite(log_u)
    return torch.where(both, log_u + scale * (log_c - log_u), torch.full_like(log_u, -torch.inf))


def _label_index(classes: list[str] | None, name: str | int, what: str) -> int:
    if classes is None:
        raise ValueError(f"{what} has no class names: it was not trained on labelled data")
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit() and name not in classes):
        i = int(name)
        if not 0 <= i < len(classes):
            raise ValueError(f"class index {i} out of range for {what}'s classes {classes}")
        return i
    if name not in classes:
        raise ValueError(f"unknown class {name!r}: {what} knows {classes}")
    return classes.index(name)


def check_interval(interval: tuple[float, float] | list[float] | None) -> tuple[float, float]:
    """(lo, hi) with 0 <= lo <= hi <= 1; None -> (0, 1)."""
    if interval is None:
        return 0.0, 1.0
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance interval must be [lo, hi] with 0 <= lo <= hi <= 1, got {interval!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"guidance interval must be [lo, hi] with 0 <= lo <= hi <= 1, got {interval!r}")
    return lo, hi


def scale_at(scale: float, interval: tuple[float, float], t: float, outside: float) -> float:
    """The guidance scale of a reverse step starting at time t: `scale` inside `interval`, else `outside`."""
    lo, hi = interval
    return scale if lo <= t <= hi else outside


class ClassifierFreeGuidance:
    """Mix the class-conditional and unconditional transitions of one class-conditional denoiser."""

    def __init__(self, label: int, scale: float = 1.0, interval: tuple[float, float] | None = None) -> None:
        if scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {scale}")
        self.label, self.scale, self.calls = int(label), float(scale), 0
        self.interval = check_interval(interval)

    def __call__(self, ctx: StepContext) -> Tensor:
        scale = scale_at(self.scale, self.interval, float(ctx.t), outside=1.0)  # outside: the conditional model
        log_u = ctx.transition(None) if scale != 1.0 else None
        log_c = ctx.transition(self.label) if scale != 0.0 else None
        return geometric_mix(log_c if log_c is not None else log_u, log_u if log_u is not None else log_c, scale)


class ClassifierGuidance:
    """Reweight the unconditional transition by a noisy classifier's likelihood ratios for class `label`."""

    def __init__(self, classifier: nn.Module, label: int, scale: float = 1.0, mode: str = "taylor",
                 batch_size: int = 4096, interval: tuple[float, float] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"classifier guidance mode must be one of {MODES}, got {mode!r}")
        if scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {scale}")
        if mode == "taylor" and not isinstance(getattr(classifier, "embed", None), nn.Embedding):
            raise ValueError("taylor mode needs a classifier whose tokens enter through `embed` (nn.Embedding)")
        self.classifier, self.label, self.scale = classifier.eval(), int(label), float(scale)
        self.mode, self.batch_size, self.calls = mode, batch_size, 0
        self.interval = check_interval(interval)

    def __call__(self, ctx: StepContext) -> Tensor:
        log_q = ctx.transition(None)
        scale = scale_at(self.scale, self.interval, float(ctx.t), outside=0.0)  # outside: unguided
        if scale == 0.0:
            return log_q
        log_r = self._taylor(ctx) if self.mode == "taylor" else self._exact(ctx, log_q)
        return log_q + scale * log_r  # -inf (unreachable) entries stay -inf

    def _log_p(self, x: Tensor, tt: Tensor) -> Tensor:
        self.calls += 1
        return self.classifier(x, tt).float().log_softmax(-1)[:, self.label]

    def _taylor(self, ctx: StepContext) -> Tensor:
        emb = self.classifier.embed
        onehot = F.one_hot(ctx.x, emb.num_embeddings).float().requires_grad_(True)
        handle = emb.register_forward_hook(lambda m, inp, out: (onehot @ m.weight).to(out.dtype))
        try:
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self._log_p(ctx.x, ctx.tt).sum(), onehot)
        finally:
            handle.remove()
        g = grad[..., : ctx.family.process.vocab_size]
        return g - g.gather(-1, ctx.x.unsqueeze(-1))  # (B, L, V), 0 at the current token

    @torch.no_grad()
    def _exact(self, ctx: StepContext, log_q: Tensor) -> Tensor:
        x, proc = ctx.x, ctx.family.process
        B, L = x.shape
        base = self._log_p(x, ctx.tt)  # (B,)
        movable = (torch.isfinite(log_q).sum(-1) > 1) & ~ctx.given  # (B, L): positions the step may change
        alphabet = proc.alphabet.to(x.device)
        b, pos = movable.nonzero(as_tuple=True)
        out = torch.zeros(B, L, proc.vocab_size, device=x.device)
        if not len(b):
            return out
        n = len(alphabet)
        cand = x[b].repeat_interleave(n, 0)  # (M * n, L)
        rows = torch.arange(len(cand), device=x.device)
        cand[rows, pos.repeat_interleave(n)] = alphabet.repeat(len(b))
        tt = ctx.tt[b].repeat_interleave(n)
        lp = torch.cat([self._log_p(cand[i : i + self.batch_size], tt[i : i + self.batch_size])
                        for i in range(0, len(cand), self.batch_size)])
        ratio = lp.view(len(b), n) - base[b][:, None]
        out[b[:, None], pos[:, None], alphabet[None, :]] = ratio
        return out


def cfg_guide(denoiser, class_name: str | int, scale: float,
              interval: tuple[float, float] | None = None) -> ClassifierFreeGuidance:
    """Classifier-free guidance with the class-conditional denoiser `denoiser` (a `seqdiff.load` result)."""
    if not hasattr(denoiser.backbone, "label_embed"):
        raise ValueError(f"guide=cfg needs a class-conditional denoiser (model=transformer_cond); {denoiser.path} "
                         "is unconditional: use guide=classifier")
    return ClassifierFreeGuidance(_label_index(denoiser.classes, class_name, str(denoiser.path)), scale, interval)


def classifier_guide(checkpoint: str, denoiser, class_name: str | int, scale: float, mode: str = "taylor",
                     batch_size: int = 4096, interval: tuple[float, float] | None = None) -> ClassifierGuidance:
    """Classifier guidance with the noisy classifier at `checkpoint` (trained with objective=noisy_classifier
    on the same noise process and tokenizer as the denoiser)."""
    from seqdiff.checkpoint import check_tokenizer, load
    from seqdiff.diffusion.families import family_of

    clf = load(checkpoint, device=next(denoiser.backbone.parameters()).device)
    if clf.objective != "classifier":
        raise ValueError(f"{checkpoint} is an '{clf.objective}' model, not a noisy classifier "
                         "(train one with objective=noisy_classifier)")
    check_tokenizer(clf, denoiser.tokenizer, f"the denoiser {denoiser.path}")
    want = type(family_of(denoiser).process).__name__
    if type(clf.process).__name__ != want:
        raise ValueError(f"the classifier was trained on {type(clf.process).__name__} noise but the denoiser uses "
                         f"{want}: train the classifier with the denoiser's process")
    return ClassifierGuidance(clf.backbone, _label_index(clf.classes, class_name, checkpoint), scale, mode, batch_size,
                              interval)

"""Diffusion objective (pure functions) and the LightningModules that train with it."""

from seqdiff.diffusion.objective import ar_nll, mdlm_nelbo, subs_log_probs

__all__ = ["subs_log_probs", "mdlm_nelbo", "ar_nll", "DiffusionLM", "AutoregressiveLM", "SequenceLM"]


def __getattr__(name: str):  # Lightning is imported only when a LightningModule is asked for
    if name in {"DiffusionLM", "AutoregressiveLM", "SequenceLM"}:
        from seqdiff.diffusion import lightning

        return getattr(lightning, name)
    raise AttributeError(name)

"""seqdiff: masked (absorbing-state) discrete diffusion language models for DNA, tables and code."""

__version__ = "0.1.0"


def load(path, use_ema: bool = True, device="cpu"):
    """Load a trained model: returns LoadedModel(backbone, tokenizer, schedule, config, objective)."""
    from seqdiff.checkpoint import load as _load

    return _load(path, use_ema=use_ema, device=device)

"""seqdiff: masked (absorbing-state) discrete diffusion language models for DNA, tables and code."""

__version__ = "0.1.0"


def load(path, use_ema: bool = True, device="cpu", trust_checkpoint: bool | None = None):
    """Load a trained model from a `.ckpt` or a `save_pretrained` folder: returns LoadedModel(backbone,
    tokenizer, schedule, config, objective). Safe by default: a checkpoint that would run code is refused
    unless `trust_checkpoint=True`."""
    from seqdiff.checkpoint import load as _load

    return _load(path, use_ema=use_ema, device=device, trust_checkpoint=trust_checkpoint)


def save_pretrained(model, directory):
    """Write a loaded model as a shareable folder (Hugging Face Hub layout: model.safetensors, config.json,
    README.md). `seqdiff.load(directory)` reads it back."""
    from seqdiff.pretrained import save_pretrained as _save

    return _save(model, directory)

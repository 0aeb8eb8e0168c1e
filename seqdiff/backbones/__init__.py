"""Denoiser backbones: (x[B, L], t[B] | None) -> logits[B, L, V]."""

from seqdiff.backbones.caduceus import BiMamba, CaduceusPh, CaduceusPS
from seqdiff.backbones.transformer import Transformer

__all__ = ["Transformer", "BiMamba", "CaduceusPS", "CaduceusPh"]

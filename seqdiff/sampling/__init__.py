"""Samplers, constraints and the sampling loop (no Lightning import)."""

from seqdiff.sampling.constraints import Constraints, no_special_tokens, special_ids
from seqdiff.sampling.loop import SampleOutput, denoise, sample
from seqdiff.sampling.samplers import AncestralSampler, sample_categorical

__all__ = ["Constraints", "no_special_tokens", "special_ids", "SampleOutput", "denoise", "sample", "AncestralSampler", "sample_categorical"]

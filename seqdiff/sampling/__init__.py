"""Samplers, constraints and the sampling loop (no Lightning import)."""

from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.loop import SampleOutput, denoise, sample
from seqdiff.sampling.samplers import AncestralSampler, sample_categorical

__all__ = ["Constraints", "SampleOutput", "denoise", "sample", "AncestralSampler", "sample_categorical"]

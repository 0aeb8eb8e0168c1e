"""Samplers, constraints and the sampling loop (no Lightning import)."""

from seqdiff.sampling.constraints import Constraints, no_special_tokens, ordinary_tokens, special_ids
from seqdiff.sampling.loop import SampleOutput, denoise, sample
from seqdiff.sampling.samplers import AncestralSampler, GridSampler, sample_categorical, uniform_timesteps

__all__ = ["Constraints", "no_special_tokens", "ordinary_tokens", "special_ids", "SampleOutput", "denoise", "sample",
           "AncestralSampler", "GridSampler", "sample_categorical", "uniform_timesteps"]

"""Noise process: schedules alpha(t), forward masking q(xt | x0), timestep sampling."""

from seqdiff.noise.masking import add_noise, sample_t
from seqdiff.noise.schedules import CosineSchedule, LinearSchedule, LogLinearSchedule, Schedule

__all__ = ["Schedule", "LogLinearSchedule", "LinearSchedule", "CosineSchedule", "add_noise", "sample_t"]

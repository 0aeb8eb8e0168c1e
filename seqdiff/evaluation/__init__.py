"""Evaluation: likelihood (bits/base), Markov baselines, sample statistics."""

from seqdiff.evaluation.likelihood import LikelihoodResult, evaluate_likelihood
from seqdiff.evaluation.markov import MarkovModel, best_markov

__all__ = ["LikelihoodResult", "evaluate_likelihood", "MarkovModel", "best_markov"]

"""Domain-free evaluation: held-out likelihood in bits per token / base (MDLM NELBO or AR NLL)."""

from seqdiff.evaluation.likelihood import LikelihoodResult, evaluate_likelihood

__all__ = ["LikelihoodResult", "evaluate_likelihood"]

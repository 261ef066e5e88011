"""The registry of posterior-collapse methods (the rows of the paper's Table 1).

``models.build(name, arch, **hyperparameters)`` returns a ready model;
``python -m models`` lists every method with its hyperparameters and citation.
Each method is one short module that overrides the hooks of ``models.base.TextVAE``.
"""
from . import lstm_lm, scale_vae, vae  # noqa: F401  (importing registers the methods)
from .base import Hyperparameters, LossTerms, TextVAE, TrainingProgress
from .networks import Architecture
from .registry import METHODS, build, describe, hyperparameters, method

__all__ = ["Architecture", "Hyperparameters", "LossTerms", "METHODS", "TextVAE", "TrainingProgress",
           "build", "describe", "hyperparameters", "method"]

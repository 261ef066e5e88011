"""The registry of posterior-collapse methods (the rows of the paper's Table 1).

``models.build(name, arch, **hyperparameters)`` returns a ready model;
``python -m models`` lists every method with its hyperparameters and citation.
Each method is one short module that overrides the hooks of ``models.base.TextVAE``;
every module of this package other than the infrastructure below is imported, and
so registered, automatically.
"""
import importlib
import pkgutil

from .base import Hyperparameters, LossTerms, TextVAE, TrainingProgress
from .networks import PRECISIONS, Architecture, bf16_parts
from .registry import METHODS, build, describe, hyperparameters, method

INFRASTRUCTURE = {"base", "errors", "gaussian", "networks", "registry", "variants"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in INFRASTRUCTURE and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")  # each method module registers itself

__all__ = ["PRECISIONS", "Architecture", "Hyperparameters", "LossTerms", "METHODS", "TextVAE", "TrainingProgress",
           "bf16_parts", "build", "describe", "hyperparameters", "method"]

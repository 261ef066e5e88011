"""LSTM-LM: the decoder with no latent variable; its NLL is exact."""
from dataclasses import dataclass

from .base import TextVAE
from .registry import register


@dataclass(frozen=True)
class NoHyperparameters:
    pass


@register
class LSTMLanguageModel(TextVAE):
    name = "lstm_lm"
    citation = "the protocol's LSTM decoder without z (He et al. 2019)"
    Hyperparameters = NoHyperparameters
    has_latent = False

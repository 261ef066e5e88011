"""VAE: the shared text VAE with the protocol's KL annealing, nothing more."""
from .base import TextVAE
from .registry import register

register(TextVAE)

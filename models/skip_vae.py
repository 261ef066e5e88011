"""Skip-VAE (Dieng, Kim, Rush & Blei, AISTATS 2019, Sec. 3: generative skip models).

The decoder is given skip connections from z to every layer, so that z reaches
the likelihood directly rather than only through the recurrence. For the
protocol's one-layer LSTM, "every layer" is the LSTM's input (z is already
concatenated with each word embedding, and sets the initial cell) and the
output layer, which becomes

    logits_t = W h_t + W_z z,

with W_z a new bias-free linear map (like the protocol's output layer),
initialised as the decoder's other weights (the profile's ``init``). The
objective is the plain ELBO with the protocol's KL annealing.

Differences from the original: Dieng et al. study deeper decoders, where the
skip connections also feed z into each hidden layer above the first; with one
layer there is none. The paper's Skip-VAE row is quoted from earlier work, not
re-run by its authors.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import TextVAE
from .networks import Architecture, LSTMDecoder, initialise
from .registry import register


class SkipLSTMDecoder(LSTMDecoder):
    """The protocol's decoder with z also added to the output layer's logits."""

    def __init__(self, arch: Architecture, nz: int | None = None):
        super().__init__(arch, nz)
        self.z_to_output = nn.Linear(self.nz, arch.vocab_size, bias=False)
        initialise(self, self.embed, arch)  # the profile's init for the whole decoder, the new layer included

    def project(self, hidden: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """logits = W h_t + W_z z: z [N, nz] reaches every time step's output directly."""
        if z is None:
            return super().project(hidden, z)
        return self.output(hidden) + self.z_to_output(z).unsqueeze(1)


@register
class SkipVAE(TextVAE):
    name = "skip_vae"
    citation = "Dieng et al. 2019, Avoiding Latent Variable Collapse with Generative Skip Models (AISTATS), Sec. 3"
    Decoder = SkipLSTMDecoder

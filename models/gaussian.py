"""Diagonal Gaussians: the posterior family of every method in the suite."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass
class DiagonalGaussian:
    """N(mu, diag(exp(logvar))) for a batch: ``mu`` and ``logvar`` are [B, nz]."""

    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return (0.5 * self.logvar).exp()

    def rsample(self, n: int = 1) -> torch.Tensor:
        """Reparameterised samples, shape [B, n, nz]."""
        eps = torch.randn(self.mu.shape[0], n, self.mu.shape[1], device=self.mu.device, dtype=self.mu.dtype)
        return self.mu.unsqueeze(1) + eps * self.std.unsqueeze(1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) for z of shape [B, n, nz] (one Gaussian per row); returns [B, n]."""
        mu, logvar = self.mu.unsqueeze(1), self.logvar.unsqueeze(1)
        return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + LOG_2PI).sum(-1)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """Per-dimension KL(q || N(0, 1)) in closed form, shape [B, nz]."""
        return 0.5 * (self.mu**2 + self.logvar.exp() - self.logvar - 1.0)

    def kl_to_normal(self, std: torch.Tensor | float) -> torch.Tensor:
        """Per-dimension KL(q || N(0, std^2)) in closed form, shape [B, nz]."""
        log_std = torch.as_tensor(std, dtype=self.mu.dtype, device=self.mu.device).log()
        return 0.5 * ((self.mu**2 + self.logvar.exp()) * (-2 * log_std).exp() - self.logvar + 2 * log_std - 1.0)

    def with_mean(self, mu: torch.Tensor) -> "DiagonalGaussian":
        return DiagonalGaussian(mu, self.logvar)


def log_normal(z: torch.Tensor, std: torch.Tensor | float = 1.0) -> torch.Tensor:
    """log N(z; 0, diag(std^2)) summed over the last dimension."""
    std = torch.as_tensor(std, dtype=z.dtype, device=z.device)
    return -0.5 * ((z / std) ** 2 + 2 * std.log() + LOG_2PI).sum(-1)

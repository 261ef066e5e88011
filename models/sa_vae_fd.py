"""SA-VAE trained through finite-difference Hessian-vector products (Kim et al. 2018's backward).

``sa_vae`` back-propagates through its K SVI steps with exact second
derivatives, so a training step holds K decoder graphs at once; at the paper's
sizes (K = 20, LSTM 1024, 20k words, batch 32) that did not fit 24 GB on CPU.
This variant is the memory-light backward of the authors' code
(harvardnlp/sa-vae, ``OptimN2N``): the K steps run without a graph, keeping
only each step's point lambda_{k-1}, gradient and random state; the backward
pass then walks them in reverse (reverse mode by hand, after Domke 2012, as
Kim et al. describe and their code does). At step k, with v the adjoint of the step's gradient g_k,

    H_k v       ~ (grad_lambda f_k(lambda + r v) - grad_lambda f_k(lambda - r v)) / 2r
    d_theta g_k v ~ (grad_theta f_k(lambda + r v) - grad_theta f_k(lambda - r v)) / 2r

(the second only with ``decoder_n2n``), each f_k evaluated with the step's
own noise and dropout masks replayed. One decoder graph lives at a time; a
step costs three gradient evaluations instead of one double-backward.

The refined posterior and the loss are those of ``sa_vae`` (same steps, same
random draws); the gradients agree with its exact ones up to the O(r^2) error
of central differences (tests/test_baselines_sa_agg.py). Evaluation, which
needs no backward pass, is sa_vae's.

Differences from OptimN2N: central differences with r set so that the
perturbation's root mean square per entry is ``fd_eps`` (theirs: one-sided,
r = 1e-5 times the adjoint); the Jacobian of the inner gradient clip is
applied exactly (theirs treats the clipped steps as unclipped and clips the
propagated products to norm 5 instead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from .base import require
from .gaussian import DiagonalGaussian
from .registry import register
from .sa_vae import SAHyperparameters, SAVAE, clip_by_norm


@dataclass(frozen=True)
class SAFDHyperparameters(SAHyperparameters):
    fd_eps: float = 1e-3  # root mean square per entry of the perturbation of (mu, logvar)

    def __post_init__(self):
        super().__post_init__()
        require(math.isfinite(self.fd_eps) and self.fd_eps > 0, f"sa_vae_fd.fd_eps must be > 0, got {self.fd_eps}")


def random_state(device: torch.device):
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_random_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def clip_vjp(grad: torch.Tensor, adjoint: torch.Tensor, max_norm: float) -> torch.Tensor:
    """adjoint^T d clip_by_norm(grad) / d grad: identity below the threshold, else
    s (I - g g^T / (n (n + 1e-6))) with s = max_norm / (n + 1e-6), n = |g|."""
    if max_norm <= 0:
        return adjoint
    norm = grad.norm()
    scale = max_norm / (norm + 1e-6)
    clipped = scale * (adjoint - grad * (grad * adjoint).sum() / (norm * (norm + 1e-6)))
    return torch.where(scale < 1, clipped, adjoint)


class _UnrolledSVI(torch.autograd.Function):
    """(mu_0, logvar_0, decoder weights) -> (mu_K, logvar_K), with the backward pass above."""

    @staticmethod
    def forward(ctx, model, batch, kl_weight, mu, logvar, *weights):
        hp, device = model.hp, mu.device
        point = (mu.detach(), logvar.detach())
        velocity = (torch.zeros_like(mu), torch.zeros_like(logvar))
        ctx.steps = []
        for _ in range(hp.steps):
            state = random_state(device)
            grads = model.step_gradients(batch, point, kl_weight, with_decoder=False)
            ctx.steps.append((point, grads, state))
            velocity = tuple(hp.svi_momentum * v - clip_by_norm(g, hp.svi_max_grad_norm)
                             for v, g in zip(velocity, grads))
            point = tuple(x + hp.svi_lr * v for x, v in zip(point, velocity))
        ctx.model, ctx.batch, ctx.kl_weight, ctx.with_decoder = model, batch, kl_weight, bool(weights)
        return point

    @staticmethod
    def backward(ctx, adjoint_mu, adjoint_logvar):
        hp, device = ctx.model.hp, adjoint_mu.device
        adjoint = [adjoint_mu, adjoint_logvar]  # of lambda_k
        adjoint_velocity = [torch.zeros_like(adjoint_mu), torch.zeros_like(adjoint_logvar)]  # of v_k
        adjoint_weights = None
        outer = random_state(device)
        for point, grads, state in reversed(ctx.steps):
            adjoint_velocity = [a_v + hp.svi_lr * a for a_v, a in zip(adjoint_velocity, adjoint)]
            direction = [clip_vjp(g, -a_v, hp.svi_max_grad_norm) for g, a_v in zip(grads, adjoint_velocity)]
            entries = sum(d.numel() for d in direction)
            length = torch.sqrt(sum((d * d).sum() for d in direction))
            r = hp.fd_eps * math.sqrt(entries) / length.clamp_min(1e-30)
            ends = []
            for sign in (1.0, -1.0):
                set_random_state(state, device)
                moved = tuple(x + sign * r * d for x, d in zip(point, direction))
                ends.append(ctx.model.step_gradients(ctx.batch, moved, ctx.kl_weight, ctx.with_decoder))
            products = [(up - down) / (2 * r) for up, down in zip(*ends)]
            adjoint = [a + p for a, p in zip(adjoint, products[:2])]
            if ctx.with_decoder:
                adjoint_weights = products[2:] if adjoint_weights is None else [
                    a + p for a, p in zip(adjoint_weights, products[2:])]
            adjoint_velocity = [hp.svi_momentum * a_v for a_v in adjoint_velocity]
        set_random_state(outer, device)
        weights = adjoint_weights or []
        return (None, None, None, *adjoint, *weights)


@register
class SAVAEFiniteDifference(SAVAE):
    name = "sa_vae_fd"
    citation = ("Kim, Wiseman, Miller, Sontag & Rush 2018, Semi-amortized variational autoencoders "
                "(ICML), trained through SVI with finite-difference Hessian-vector products as in their OptimN2N")
    Hyperparameters = SAFDHyperparameters

    def step_gradients(self, batch, point, kl_weight: float, with_decoder: bool) -> tuple[torch.Tensor, ...]:
        """The gradient of f_k at ``point`` w.r.t. (mu, logvar) and, if asked, the decoder's weights."""
        mu, logvar = (x.detach().requires_grad_() for x in point)
        score, weights = self.detached_score(trainable=with_decoder)
        with torch.enable_grad():
            objective = self.svi_objective(batch, mu, logvar, kl_weight, score)
            inputs = [mu, logvar] + (list(weights.values()) if with_decoder else [])
            grads = torch.autograd.grad(objective, inputs, allow_unused=True)
        return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))

    def refine(self, batch, q0: DiagonalGaussian, kl_weight: float) -> DiagonalGaussian:
        if not (torch.is_grad_enabled() and self.hp.steps):
            return super().refine(batch, q0, kl_weight)  # evaluation: no backward pass, no graph kept
        weights = tuple(self.decoder.parameters()) if self.hp.decoder_n2n else ()
        return DiagonalGaussian(*_UnrolledSVI.apply(self, batch, kl_weight, q0.mu, q0.logvar, *weights))

"""Cyclical KL annealing (Fu et al., NAACL 2019, Sec. 3, Eq. 5-6).

The KL weight follows M cycles instead of one warm-up. The T = max_epochs *
steps_per_epoch training iterations are split into M periods of T/M
iterations; inside each period the weight rises linearly from 0 to 1 over the
first R of the period and then stays at 1:

    beta_t = min(1, (t - start_c) / (R * T / M)),   start_c = floor(c * T / M),

where t is the 0-based global iteration and c the cycle that t falls in. This
is the per-iteration rule of the authors' ``frange_cycle_linear``
(haofuml/cyclical_annealing); the paper's Eq. 6 states the same rule with a
modulo over the cycle length (the two can differ by rounding when T/M is not an
integer; we follow the code). The schedule
replaces the protocol's linear annealing (it is not multiplied by it): the
profile's ``kl_start`` and ``warmup_epochs`` are not used, and the weight
restarts at 0, as in the authors' code (start=0).

Differences from the original setting:
- T counts the profile's ``max_epochs``; a run that stops early (He et al.'s
  learning-rate decays) never reaches the later cycles, and a reload of the best
  model on a decay does not restart the schedule.
- Fu et al.'s own language-model script restarts an epoch-based warm-up from
  0.1 every few epochs (and BN-VAE's script, the likely source of the paper's
  cyclical row, restarts the protocol's warm-up every ``--cycle`` epochs); we
  follow the per-iteration ``frange_cycle_linear`` of the paper.
- ``anneal=False`` is refused: the cycles are this method's annealing, and
  without them it is ``vae*``.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from .base import Hyperparameters, TextVAE, TrainingProgress, require
from .registry import register


@dataclass(frozen=True)
class CyclicalHyperparameters(Hyperparameters):
    cycles: int = 4  # M: number of annealing cycles over the whole training run
    ratio: float = 0.5  # R: fraction of each cycle spent rising from 0 to 1

    def __post_init__(self):
        require(self.cycles >= 1, f"cyclical.cycles must be an integer >= 1, got {self.cycles}")
        require(0 < self.ratio <= 1, f"cyclical.ratio must lie in (0, 1], got {self.ratio}")
        require(self.anneal, "cyclical.anneal must stay true: the cycles are its KL annealing "
                             "(for no annealing use vae with anneal=false)")


def cyclical_weight(step: int, total: int, cycles: int, ratio: float) -> float:
    """The KL weight at 0-based iteration ``step`` of ``total`` (Fu et al.'s frange_cycle_linear)."""
    if total <= 0:
        return 1.0
    period = total / cycles
    starts = [math.floor(c * period) for c in range(cycles)]
    start = starts[bisect.bisect_right(starts, step) - 1]  # the last cycle that has begun
    return min(1.0, (step - start) / (period * ratio))


@register
class Cyclical(TextVAE):
    name = "cyclical"
    citation = ("Fu et al. 2019, Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing (NAACL), "
                "Sec. 3, Eq. 6")
    Hyperparameters = CyclicalHyperparameters
    positional = ("cycles", "ratio")

    def kl_weight(self, progress: TrainingProgress) -> float:
        total = progress.max_epochs * progress.steps_per_epoch
        return cyclical_weight(progress.step, total, self.hp.cycles, self.hp.ratio)

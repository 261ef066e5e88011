"""The shared training protocol of He et al. (2019), written once for every method.

Each epoch: one pass over the training batches (``model.training_step``), the
method's end-of-epoch update, any evaluation statistics of ours
(``refresh_statistics``, timed apart as ``statistics_seconds``: an epoch's
``seconds`` hold the method's own cost), then the validation loss (-ELBO of the method's
objective at KL weight 1). The best-validation model is kept. When the
validation loss has not improved for ``decay_patience`` epochs (and the epoch
is at least ``decay_min_epoch``), the best model is reloaded and the learning
rate multiplied by ``decay_factor``; training stops after ``max_decays`` decays
or ``max_epochs`` epochs, and ``stop_reason`` says which. All numbers come from the profile.

With a checkpoint path, the whole training state (model, optimisers, schedule
and decay counters, best model, history, every RNG, the data loader's position,
and the method's own state) is saved after every epoch, and ``fit`` resumes
from it: an interrupted run continues as if it had never stopped. Of the CUDA RNGs
only the run's own device is saved (a run uses one GPU), so that a checkpoint
resumes on a machine, or under a scheduler, that shows fewer GPUs.
"""
from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models import TrainingProgress

from . import metrics
from .config import Profile
from .errors import UserError, machine_fault_kind
from .files import atomic_torch_save


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


class UnusableCheckpoint(UserError):
    """A readable checkpoint that this code cannot restore (a bug, or a checkpoint of other code)."""


class Trainer:
    """Optimises a model under the protocol; ``fit()`` returns the per-epoch history."""

    def __init__(self, model, profile: Profile, train_batches, valid_batches, log: Callable[[str], None] = print,
                 eval_memory_mb: int | None = None):
        self.model, self.profile = model, profile
        self.eval_memory_mb = eval_memory_mb or profile.eval_memory_mb  # the device's IW budget (benchmarks/devices.py)
        self.train_batches, self.valid_batches = train_batches, valid_batches
        self.log = log
        self.lr = profile.lr
        self.optimizers = self.make_optimizers()
        self.epoch = 0  # epochs completed
        self.step_count = 0
        self.kl_weight = 1.0
        self.best_loss, self.best_state, self.best_epoch = math.inf, None, 0
        self.plateau_loss, self.not_improved, self.decays = math.inf, 0, 0
        self.history: list[dict] = []
        self.stopped = False
        self.nonfinite_steps = torch.zeros((), dtype=torch.long)  # steps with a non-finite gradient norm
        self.rng = np.random.default_rng(torch.initial_seed())  # random_train_batch: seeded by the run

    COUNTERS = ("lr", "epoch", "step_count", "kl_weight", "best_loss", "best_epoch", "plateau_loss",
                "not_improved", "decays", "history", "stopped")

    @property
    def device(self) -> torch.device:
        """The run's device: that of the model's parameters (a run uses one GPU at most)."""
        return next(self.model.parameters()).device

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "counters": {name: getattr(self, name) for name in self.COUNTERS},
            "model": self.model.state_dict(), "method": self.model.resume_state(), "best_state": self.best_state,
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "loader": self.train_batches.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "trainer": self.rng.bit_generator.state,
                    "cuda": self.cuda_rng_state()},
        }

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["counters"].items():
            setattr(self, name, value)
        self.model.load_state_dict(state["model"])
        self.model.load_resume_state(state["method"])
        self.best_state = state["best_state"]
        self.optimizers = self.make_optimizers()
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.train_batches.load_state_dict(state["loader"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.rng.bit_generator.state = rng["trainer"]
        self.restore_cuda_rng_state(rng["cuda"])

    def cuda_rng_state(self) -> torch.Tensor | None:
        """The CUDA RNG state of the run's own device; None for a run on the CPU.

        Not ``get_rng_state_all()`` (one state per visible GPU): restoring that list fails
        where fewer GPUs are visible than when it was saved.
        """
        device = self.device
        return torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore_cuda_rng_state(self, saved) -> None:
        """Restore ``cuda_rng_state()`` to the run's current device (ignored on the CPU).

        A checkpoint of older code holds a list, one state per GPU visible then: the state
        at the current device's index is taken where there is one, else the first.
        """
        device = self.device
        if saved is None or device.type != "cuda" or not torch.cuda.is_available():
            return
        index = device.index if device.index is not None else torch.cuda.current_device()
        if isinstance(saved, (list, tuple)):
            if not saved:
                return
            saved = saved[index] if index < len(saved) else saved[0]
        torch.cuda.set_rng_state(saved, index)

    def save_checkpoint(self, path: Path) -> None:
        atomic_torch_save(path, self.state_dict())

    def resume(self, path: Path) -> bool:
        """Load the checkpoint if there is one; True if training goes on from it.

        A file that torch cannot read is reported and removed, and training starts over: a
        truncated or altered file raises anything from EOFError to UnicodeDecodeError there.
        A readable one that cannot be restored (a bug of ours, a checkpoint of other code)
        raises UnusableCheckpoint and is kept: the trainer is half restored by then, so going
        on would train from a mix of both states, and deleting the user's progress would hide
        the bug. A fault of the machine (errors.machine_fault_kind) propagates: the file is fine.
        """
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - whatever torch.load raises, the file is unreadable
            self.log(f"checkpoint {path} is unreadable ({describe(error)}); training from scratch")
            path.unlink(missing_ok=True)
            return False
        try:
            self.load_state_dict(state)
        except Exception as error:
            if machine_fault_kind(error):
                raise
            self.log(f"checkpoint {path} cannot be restored ({describe(error)}); kept, training stopped")
            raise UnusableCheckpoint(f"checkpoint {path} cannot be restored by this code ({describe(error)}); "
                                     "it is kept: resume with the code that wrote it, or delete it to train "
                                     "the run from scratch") from error
        self.log(f"resumed from {path} after epoch {self.epoch}")
        return True

    def random_train_batch(self):
        """A uniformly chosen training mini-batch (Agg-VAE's fresh batches for the inner loop)."""
        return self.train_batches.random_batch(self.rng)

    # ------------------------------------------------------------ optimisation
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimiser for the encoder and one for everything else (Agg-VAE steps them apart).

        ``foreach``: one multi-tensor update per optimiser instead of a loop over the
        parameters (PyTorch's default on CUDA only); bitwise the same updates, and
        Adam's step 25% faster at the quick sizes on CPU.
        """
        groups = {"encoder": [], "decoder": []}
        for name, param in self.model.named_parameters():
            groups["encoder" if name.startswith("encoder.") else "decoder"].append(param)
        make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=self.lr, momentum=self.profile.momentum, foreach=True),
                "adam": lambda ps: torch.optim.Adam(ps, lr=self.lr, foreach=True)}[self.profile.optimizer]
        return {name: make(params) for name, params in groups.items() if params}

    def step(self, loss: torch.Tensor, update: tuple[str, ...] = ("encoder", "decoder")) -> None:
        """Back-propagate ``loss``, clip the global gradient norm, step the named optimisers."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.profile.clip)
        self.nonfinite_steps = self.nonfinite_steps + ~torch.isfinite(norm)  # checked once per epoch: no sync
        for name in update:
            if name in self.optimizers:
                self.optimizers[name].step()

    def progress(self) -> TrainingProgress:
        p = self.profile
        return TrainingProgress(self.epoch + 1, self.step_count, len(self.train_batches), p.kl_start,
                                p.warmup_epochs, p.max_epochs)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        self.model.on_epoch_start(self.epoch + 1)
        loss_sum = rec_sum = kl_sum = 0.0
        docs = 0
        self.nonfinite_steps = torch.zeros((), dtype=torch.long)
        for batch in self.train_batches:
            if batch.size < self.profile.min_train_batch:  # the shen2021 lineage skips small batches
                continue
            self.kl_weight = self.model.kl_weight(self.progress())
            terms = self.model.training_step(batch, self)
            loss_sum = loss_sum + terms.loss.detach() * batch.size
            rec_sum = rec_sum + terms.rec.detach().sum()
            kl_sum = kl_sum + terms.kl.detach().sum()
            docs += batch.size
            self.step_count += 1
        if not docs:
            raise UserError(f"every training batch has fewer than min_train_batch = {self.profile.min_train_batch} "
                            "documents, so nothing was trained; lower min_train_batch (--set min_train_batch=N)")
        record = {"train_loss": float(loss_sum) / docs, "train_rec": float(rec_sum) / docs,
                  "train_kl": float(kl_sum) / docs, "kl_weight": self.kl_weight}
        if not math.isfinite(record["train_loss"]):
            raise TrainingDiverged(f"training loss became {record['train_loss']} in epoch {self.epoch + 1}",
                                   self.epoch + 1)
        if (exploded := int(self.nonfinite_steps)) > 0:
            raise TrainingDiverged(f"the gradient norm became non-finite in {exploded} step(s) of epoch "
                                   f"{self.epoch + 1}", self.epoch + 1)
        self.model.on_epoch_end()
        start = time.perf_counter()
        self.model.refresh_statistics()  # ours, not the method's: timed apart from training (Table 2)
        record["statistics_seconds"] = time.perf_counter() - start
        record.update(self.model.state_summary())
        return record

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        rec = kl = 0.0
        docs = 0
        for batch in self.valid_batches:
            terms = self.model.loss(batch, 1.0)
            rec += terms.rec.sum().item()
            kl += terms.kl.sum().item()
            docs += batch.size
        record = {"valid_loss": (rec + kl) / docs, "valid_rec": rec / docs, "valid_kl": kl / docs}
        # The metrics draw their own samples; forking the RNG keeps training's random stream the same
        # whatever they draw, so changing a metric's definition never changes what is trained.
        device = self.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if self.model.has_latent:
                stats = metrics.latent_statistics(self.model, self.valid_batches)
                record.update(valid_mi=stats["mi"], valid_mi_batch=stats["mi_batch"], valid_au=stats["au"])
            if self.profile.valid_iw_samples:  # the IW-NLL per epoch (a study's curves; off by default)
                scores = metrics.likelihood_statistics(self.model, self.valid_batches, self.profile.valid_iw_samples,
                                                       self.eval_memory_mb)
                record.update(valid_nll=scores["nll"], valid_nll_unit_prior=scores["nll_unit_prior"])
        return record

    def end_of_epoch(self, valid_loss: float) -> bool:
        """Best-model bookkeeping and He et al.'s learning-rate decay; True = stop."""
        if valid_loss < self.best_loss:
            self.best_loss, self.best_epoch = valid_loss, self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        if valid_loss > self.plateau_loss:
            self.not_improved += 1
            if self.not_improved >= self.profile.decay_patience and self.epoch >= self.profile.decay_min_epoch:
                self.plateau_loss, self.not_improved = valid_loss, 0
                self.lr *= self.profile.decay_factor
                self.decays += 1
                self.model.load_state_dict(self.best_state)
                self.optimizers = self.make_optimizers()
                self.log(f"  no improvement for {self.profile.decay_patience} epochs: best model reloaded, lr -> {self.lr:g}")
        else:
            self.not_improved, self.plateau_loss = 0, valid_loss
        return self.decays >= self.profile.max_decays and self.profile.max_decays > 0

    def fit(self, checkpoint: Path | None = None, on_epoch: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Train to the protocol's end; ``on_epoch(history)`` after each epoch's checkpoint (the run's
        history.csv, so a run cut short keeps its epochs)."""
        if checkpoint is not None:
            self.resume(checkpoint)
        while not self.stopped and self.epoch < self.profile.max_epochs:
            start = time.perf_counter()
            record = {"epoch": self.epoch + 1, "lr": self.lr}
            record.update(self.train_epoch())
            record.update(self.validate())
            if not math.isfinite(record["valid_loss"]):
                raise TrainingDiverged(f"validation loss became {record['valid_loss']} in epoch {self.epoch + 1}",
                                       self.epoch + 1)
            self.model.on_validated(record)
            self.epoch += 1
            self.stopped = self.end_of_epoch(record["valid_loss"])
            record["seconds"] = time.perf_counter() - start - record["statistics_seconds"]
            self.history.append(record)
            self.log(format_epoch(record))
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(self.history)
        self.model.load_state_dict(self.best_state)
        return self.history

    @property
    def stop_reason(self) -> str:
        """Why ``fit`` ended: "max_decays" (the protocol's own stopping rule) or "max_epochs" (the cap)."""
        return "max_decays" if self.stopped else "max_epochs"


def describe(error: BaseException) -> str:
    """An exception in a log line: its type and the first line of its message."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def format_epoch(record: dict) -> str:
    keys = ["train_loss", "train_kl", "kl_weight", "valid_loss", "valid_kl", "valid_mi", "valid_au", "f_mean", "f_max"]
    fields = " ".join(f"{k}={record[k]:.3g}" for k in keys if k in record)
    return f"epoch {record['epoch']:3d} {fields} ({record['seconds']:.1f}s)"

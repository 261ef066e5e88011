"""Mini-batching: :class:`BatchLoader` cuts a split's id sequences into padded :class:`Batch` tensors,
epoch after epoch, with its own seeded RNG and a resumable state."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from benchmarks.errors import UserError

MODES = ("length", "equal_length", "random", "resplit", "by_label")


@dataclass(frozen=True)
class Batch:
    tokens: torch.Tensor  # [B, T] long: <s> first, </s> at lengths-1, then PAD
    lengths: torch.Tensor  # [B] long: tokens incl. <s> and </s>
    labels: torch.Tensor | None  # [B] long, or None when the corpus has no labels
    index: torch.Tensor  # [B] long: positions of the documents in their split
    _num_words: int | None = field(default=None, repr=False, compare=False)  # cache of num_words

    def to(self, device) -> Batch:
        return Batch(self.tokens.to(device), self.lengths.to(device),
                     None if self.labels is None else self.labels.to(device), self.index.to(device), self._num_words)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_words(self) -> int:
        """Predicted words: sum(lengths - 1), counting </s> and not <s>."""
        return self._num_words if self._num_words is not None else int((self.lengths - 1).sum())


def _cut(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive chunks of ``batch_size``; a short tail (fewer than max(2, batch_size // 2)
    documents) joins the previous chunk, so no batch has a single document."""
    chunks = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if len(chunks) > 1 and batch_size > 1 and len(chunks[-1]) < max(2, batch_size // 2):
        tail = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], tail])
    return chunks


class BatchLoader:
    """Iterates a split in mini-batches, epoch after epoch.

    Modes (how documents are partitioned into batches):

    * ``length``: sorted by length (stable) and cut into consecutive batches (little padding).
    * ``equal_length``: He et al.'s ``create_data_batch`` (data/text_data.py:219-255 of
      jxhe/vae-lagging-encoder, the same in DU-VAE): sorted by length, a new batch at every change
      of length, so each batch holds one length and the last of each length may be small (down to
      one document; no tail is merged).
    * ``random``: a random partition, drawn once and kept ("random / unchanged").
    * ``resplit``: a new random partition every epoch ("random / resplit").
    * ``by_label``: each batch holds one label only (e.g. one mixture component); drawn once.

    Except for ``resplit``, the partition is fixed and its padded tensors are built once; with
    ``shuffle=True`` the order of the batches is redrawn every epoch, with ``shuffle=False`` it is
    the partition's order (and ``resplit`` keeps its first partition). A tail shorter than
    max(2, batch_size // 2) joins the previous batch; in ``by_label`` mode a label with a single
    document still makes a batch of one. Inside a batch, documents are sorted by decreasing length.
    Batches may be shared between epochs: treat their tensors as read-only. One epoch is in
    progress at a time: a new ``iter`` starts the next epoch (abandoning an unfinished one).

    All randomness comes from the loader's own ``numpy.random.Generator(PCG64(seed))``, never from
    a global RNG. ``state_dict()`` taken at any point (between epochs or mid-epoch) and loaded into a
    new loader built with the same arguments continues the identical stream of batches: the next
    ``iter`` yields the rest of the interrupted epoch, then full epochs.
    """

    def __init__(self, encoded: list[list[int]], batch_size: int, *, pad_id: int,
                 labels: list[int | None] | None = None, mode: str = "length", shuffle: bool = True,
                 seed: int = 0, device="cpu"):
        if mode not in MODES:
            raise UserError(f"unknown batching mode {mode!r}; choose one of {', '.join(MODES)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch size must be a positive integer, got {batch_size!r}")
        if not encoded:
            raise UserError("cannot batch an empty split; check the dataset and its filters (max_len, *_docs)")
        if labels is not None and len(labels) != len(encoded):
            raise ValueError(f"{len(labels)} labels for {len(encoded)} documents")
        has_labels = labels is not None and all(y is not None for y in labels)
        if mode == "by_label" and not has_labels:
            raise UserError("batching mode 'by_label' needs a label on every document; "
                            "use a labelled dataset (synthetic, yelp_small, yelp, short_yelp) or another mode")
        self.batch_size, self.mode, self.shuffle, self.seed = batch_size, mode, shuffle, seed
        self.pad_id, self.device = pad_id, torch.device(device)

        # All documents in one flat array; a batch is gathered from it with one fancy index.
        self._lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)
        self._flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64,
                                 count=int(self._lengths.sum()))
        self._labels = np.asarray(labels, dtype=np.int64) if has_labels else None

        self._rng = np.random.Generator(np.random.PCG64(seed))
        partition = self._draw_partition()  # the first draw of the stream, also for resplit
        self._num_batches = len(partition)
        fixed = mode != "resplit" or not shuffle
        self._fixed = [self._make_batch(idx) for idx in partition] if fixed else None
        self._epoch_start: dict | None = None  # RNG state before the epoch in progress drew its plan
        self._position = 0  # batches of the epoch in progress already yielded
        self._resume: tuple[dict, int] | None = None  # set by load_state_dict

    def __len__(self) -> int:
        return self._num_batches

    @property
    def num_docs(self) -> int:
        return len(self._lengths)

    def random_batch(self, rng: np.random.Generator) -> Batch:
        """One batch of the current partition, chosen uniformly with ``rng`` (not the loader's own RNG)."""
        if self._fixed is not None:
            return self._fixed[int(rng.integers(self._num_batches))]
        members = rng.choice(self.num_docs, size=min(self.batch_size, self.num_docs), replace=False)
        return self._make_batch(np.sort(members))

    def _draw_partition(self) -> list[np.ndarray]:
        n, bs = len(self._lengths), self.batch_size
        if self.mode == "length":
            return _cut(np.argsort(self._lengths, kind="stable"), bs)
        if self.mode == "equal_length":
            order = np.argsort(self._lengths, kind="stable")
            runs = np.split(order, np.flatnonzero(np.diff(self._lengths[order])) + 1)  # one run per length
            return [run[i: i + bs] for run in runs for i in range(0, len(run), bs)]
        if self.mode in ("random", "resplit"):
            return _cut(self._rng.permutation(n), bs)
        chunks = []  # by_label
        for label in np.unique(self._labels):
            members = np.flatnonzero(self._labels == label)
            chunks += _cut(members[self._rng.permutation(len(members))], bs)
        return chunks

    def _make_batch(self, idx: np.ndarray) -> Batch:
        idx = idx[np.argsort(-self._lengths[idx], kind="stable")]
        lengths = self._lengths[idx]
        steps = np.arange(lengths.max())
        inside = steps[None, :] < lengths[:, None]
        gather = np.where(inside, self._offsets[idx][:, None] + steps[None, :], 0)
        tokens = np.where(inside, self._flat[gather], self.pad_id)
        labels = None if self._labels is None else torch.from_numpy(self._labels[idx]).to(self.device)
        return Batch(torch.from_numpy(tokens).to(self.device), torch.from_numpy(lengths).to(self.device),
                     labels, torch.from_numpy(idx).to(self.device), int((lengths - 1).sum()))

    def __iter__(self) -> Iterator[Batch]:
        """One epoch (the rest of an interrupted one right after ``load_state_dict``)."""
        skip = 0
        if self._resume is not None:
            state, skip = self._resume
            self._resume = None
            self._rng.bit_generator.state = state
        self._epoch_start = self._rng.bit_generator.state
        partition = None if self._fixed is not None else self._draw_partition()
        order = self._rng.permutation(self._num_batches) if self.shuffle else np.arange(self._num_batches)
        self._position = skip
        return self._epoch(partition, order[skip:])

    def _epoch(self, partition, order) -> Iterator[Batch]:
        for k in order:
            batch = self._fixed[k] if partition is None else self._make_batch(partition[k])
            self._position += 1
            yield batch
        self._epoch_start = None

    def state_dict(self) -> dict:
        """Where the stream stands: RNG state and position in the epoch in progress (plain Python types)."""
        if self._resume is not None:
            rng, position = self._resume
        elif self._epoch_start is not None and self._position < self._num_batches:
            rng, position = self._epoch_start, self._position
        else:
            rng, position = self._rng.bit_generator.state, 0
        return {"format": 1, "mode": self.mode, "batch_size": self.batch_size, "num_docs": self.num_docs,
                "seed": self.seed, "shuffle": self.shuffle, "rng": rng, "position": position}

    def load_state_dict(self, d: dict) -> None:
        settings = ("mode", "batch_size", "num_docs", "seed", "shuffle")
        ours = {k: getattr(self, k) for k in settings}
        theirs = {k: d.get(k) for k in settings}
        if d.get("format") != 1 or ours != theirs:
            raise UserError(f"the saved data-loader state was made with {theirs}, this loader has {ours}; "
                            "resume with the same data, batch size, mode and seed")
        self._resume = (d["rng"], int(d["position"]))
        self._epoch_start = None

"""A loaded corpus: :func:`load_corpus` reads a dataset's three splits, filters and caps them and
builds the vocabulary; :class:`Corpus` encodes the splits and hands out their batch loaders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from benchmarks.errors import UserError

from .batching import BatchLoader
from .documents import SPECIALS, SPLITS, Document, Vocabulary, _check_int, read_documents
from .registry import get_dataset


@dataclass
class Corpus:
    name: str
    train: list[Document]
    valid: list[Document]
    test: list[Document]
    vocab: Vocabulary
    description: str  # one line; says whether it is a derived subset
    _encoded: dict[str, list[list[int]]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def split(self, name: str) -> list[Document]:
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def encoded(self, split: str) -> list[list[int]]:
        """Id sequences (with ``<s>``/``</s>``) of a split; computed once."""
        if split not in self._encoded:
            self._encoded[split] = [self.vocab.encode(doc.tokens) for doc in self.split(split)]
        return self._encoded[split]

    def labels(self, split: str) -> list[int] | None:
        """Labels of a split, or None when its documents carry none."""
        docs = self.split(split)
        return [d.label for d in docs] if docs and docs[0].label is not None else None

    def loader(self, split: str, batch_size: int, **kwargs) -> BatchLoader:
        """A :class:`BatchLoader` over ``split`` (labels included when present)."""
        return BatchLoader(self.encoded(split), batch_size, pad_id=self.vocab.pad_id,
                           labels=self.labels(split), **kwargs)


def load_corpus(
    dataset: str | os.PathLike,
    *,
    data_dir=None,
    cache_dir=None,
    max_len: int | None = None,
    vocab_size: int | None = None,
    train_docs: int | None = None,
    valid_docs: int | None = None,
    test_docs: int | None = None,
    download: bool = True,
) -> Corpus:
    """Load a dataset (registered name or user directory). Per split: read, keep documents with
    at most ``max_len`` tokens, keep the first ``{split}_docs``. The vocabulary comes from the
    resulting train split, capped at ``vocab_size`` entries (specials included)."""
    for arg, value in (("max_len", max_len), ("train_docs", train_docs),
                       ("valid_docs", valid_docs), ("test_docs", test_docs)):
        _check_int(arg, value)
    _check_int("vocab_size", vocab_size, minimum=len(SPECIALS))
    spec = get_dataset(dataset)
    files = spec.prepare(data_dir, cache_dir, download)
    caps = {"train": train_docs, "valid": valid_docs, "test": test_docs}
    splits = {}
    for split in SPLITS:
        docs = read_documents(files[split])
        if max_len is not None:
            docs = [d for d in docs if len(d.tokens) <= max_len]
            if not docs:
                raise UserError(f"max_len={max_len} leaves no document in the {split} split of {spec.name!r}; "
                                "raise max_len")
        splits[split] = docs[: caps[split]]
    vocab = Vocabulary.build(splits["train"], vocab_size)
    options = [f"{k}={v}" for k, v in (("max_len", max_len), ("vocab_size", vocab_size), *caps.items())
               if v is not None]
    description = spec.description + (f" [{', '.join(options)}]" if options else "")
    return Corpus(spec.name, splits["train"], splits["valid"], splits["test"], vocab, description)

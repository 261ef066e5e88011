"""Documents and their vocabulary: the suite's one text-file reader and writer, and the word <-> id map.

File format (every dataset, and a user corpus): UTF-8, one document per line,
optionally ``LABEL<TAB>text`` with an integer label. Lines that are blank after
stripping are skipped, as are labelled lines with no text (He et al. drop them
too). Text is split on whitespace and not lower-cased (the releases already are).
``<s>``/``</s>`` are added around each document when it is encoded.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from benchmarks.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "_UNK"  # _UNK is the token the Yahoo release already uses
SPECIALS = (PAD, BOS, EOS, UNK)
SPLITS = ("train", "valid", "test")


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Document:
    tokens: tuple[str, ...]  # without <s>/</s>
    label: int | None = None


def read_documents(path: str | os.PathLike, label: int | None = None) -> list[Document]:
    """Read one document per line (optionally ``LABEL<TAB>text``); the single reader of the suite.
    ``label``, if given, is the label of every line (for files labelled by their name, such as
    ``sentiment.test.1``); such a file must then have no label column."""
    path = Path(path)
    default_label = label
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; check the path and its permissions") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise UserError(
            f"{path}, line {line}: byte 0x{raw[err.start]:02x} is not valid UTF-8; re-encode the file as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")

    docs: list[Document] = []
    first_labelled: bool | None = None  # whether the first document had a label
    first_line = 0
    # split("\n") and not splitlines(): the latter also breaks at \x1c, \x85, \u2028 ...
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        label = default_label
        if "\t" in line:
            if default_label is not None:
                raise UserError(f"{path}, line {number}: has a tab, but its label comes from the file name; "
                                "remove the label column")
            head, line = line.split("\t", 1)
            if "\t" in line:
                raise UserError(f"{path}, line {number}: {line.count(chr(9)) + 2} tab-separated columns; write "
                                "'LABEL<TAB>text' (two columns) or the text alone")
            try:
                label = int(head)
            except ValueError:
                raise UserError(
                    f"{path}, line {number}: label {head.strip()[:20]!r} before the tab is not an integer; "
                    "write 'LABEL<TAB>text' with an integer label, or drop the tab"
                ) from None
        if first_labelled is None:
            first_labelled, first_line = label is not None, number
        elif first_labelled != (label is not None):
            raise UserError(
                f"{path}, line {number}: {'has' if label is not None else 'has no'} label but line {first_line} "
                f"{'has none' if label is not None else 'has one'}; label every line ('LABEL<TAB>text') or none"
            )
        tokens = tuple(line.split())
        if tokens:
            docs.append(Document(tokens, label))
    if not docs:
        raise UserError(f"{path} holds no documents (empty file); put one tokenized document per line")
    return docs


def format_documents(docs: Iterable[Document]) -> bytes:
    """The file form of ``docs``, readable by :func:`read_documents`."""
    lines = (
        " ".join(d.tokens) if d.label is None else f"{d.label}\t{' '.join(d.tokens)}"
        for d in docs
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


# --------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Word <-> id map. Ids: PAD=0, BOS=1, EOS=2, UNK=3, then words by decreasing
    training frequency, ties broken alphabetically (deterministic)."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[:4]) != SPECIALS or len(set(words)) != len(words):
            raise UserError(
                f"malformed vocabulary: it must start with {list(SPECIALS)} and hold no duplicate word; "
                "rebuild it from the corpus"
            )
        self.words = words
        # Only real words and UNK are looked up: a literal "<s>" or "<pad>" in the text is unknown, so
        # it can never be mistaken for structure.
        self._ids = {w: i for i, w in enumerate(words) if i > self.unk_id}
        self._ids[UNK] = self.unk_id

    @classmethod
    def build(cls, docs: Sequence[Document], max_size: int | None = None) -> Vocabulary:
        """Vocabulary of ``docs``; ``max_size`` counts the 4 specials, None keeps every word."""
        _check_int("vocabulary size", max_size, minimum=len(SPECIALS))
        counts = Counter(tok for doc in docs for tok in doc.tokens)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *(word for word, _ in ranked)])

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """``<s> tokens </s>`` as ids; unknown words become ``unk_id``."""
        ids, unk = self._ids, self.unk_id
        return [self.bos_id, *(ids.get(tok, unk) for tok in tokens), self.eos_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of ``ids``: drops ``<pad>`` and ``<s>``, stops at ``</s>``. Accepts a list or a 1-d tensor."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.words[i])
        return words

    def to_json(self) -> dict:
        return {"format": "vaebench-vocabulary-1", "words": list(self.words)}

    @classmethod
    def from_json(cls, d: dict) -> Vocabulary:
        well_formed = isinstance(d, dict) and isinstance(d.get("words"), list)
        if not well_formed or d.get("format") != "vaebench-vocabulary-1":
            raise UserError("not a vaebench vocabulary (expected {'format': 'vaebench-vocabulary-1', "
                            "'words': [...]}); save it with Vocabulary.to_json")
        return cls(d["words"])


def _check_int(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise UserError(f"{name} must be an integer >= {minimum} or None, got {value!r}"
                        + (" (it counts the 4 special tokens)" if minimum == len(SPECIALS) else ""))

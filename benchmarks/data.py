"""Corpora, vocabulary and mini-batching for the Scale-VAE benchmark suite.

Data follow the text-VAE protocol of He et al. 2019 (see ``shared/notes/protocol.md``):
one tokenized, lower-cased document per line, ``<s>``/``</s>`` added around each
document, vocabulary taken from the training split.

File format (every dataset, and a user corpus): UTF-8, one document per line,
optionally ``LABEL<TAB>text`` with an integer label. Lines that are blank after
stripping are skipped, as are labelled lines with no text (He et al. drop them
too). Text is split on whitespace and not lower-cased (the releases already are).

Where files live:

* ``data_dir`` (argument, else ``$VAEBENCH_DATA_DIR``, else ``./data``) holds the
  public releases exactly as downloaded (``yahoo_data/``, ``yelp_data/``,
  ``yelp_style/``). It is a download cache: missing files are fetched when
  ``download=True``, files with a published checksum are verified.
* ``cache_dir`` (argument, else ``$VAEBENCH_CACHE_DIR``, else ``~/.cache/vaebench``)
  holds everything *derived* (subsets, synthetic data), each dataset in its own
  folder with a ``manifest.json`` of sha256 sums. Derived files are never
  written next to the sources.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import sys
import tarfile
import tempfile
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from benchmarks.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "_UNK"  # _UNK is the token the Yahoo release already uses
SPECIALS = (PAD, BOS, EOS, UNK)
SPLITS = ("train", "valid", "test")
MODES = ("length", "random", "resplit", "by_label")

# Fixed seed of every derived subset (shuffles before balancing); part of the cache key.
SUBSET_SEED = 2024
_CACHE_FORMAT = 1  # bump when the layout of derived files changes


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


# --------------------------------------------------------------------------- corpus


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


# --------------------------------------------------------------------------- files and checksums


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Explicit argument, else ``$VAEBENCH_DATA_DIR``, else ``./data``."""
    chosen = data_dir if data_dir is not None else os.environ.get("VAEBENCH_DATA_DIR") or "data"
    return Path(chosen).expanduser()


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Explicit argument, else ``$VAEBENCH_CACHE_DIR``, else ``~/.cache/vaebench``; created if missing."""
    chosen = cache_dir if cache_dir is not None else os.environ.get("VAEBENCH_CACHE_DIR") or "~/.cache/vaebench"
    path = Path(chosen).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create the cache directory {path} ({err.strerror or err}); "
            "set VAEBENCH_CACHE_DIR (or pass cache_dir) to a writable directory"
        ) from err
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_torch_save(path: Path, value) -> None:
    """``torch.save`` through ``atomic_write``. torch's own file writer turns a full disk into an
    opaque RuntimeError; serialised in memory first, a failed write is the OSError it is."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write(path, buffer.getbuffer())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``:
    readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cached_splits(
    cache_dir: Path,
    key: str,
    sources: Sequence[Path],
    build: Callable[[], dict[str, list[Document]]],
) -> dict[str, Path]:
    """Files of a derived dataset in ``cache_dir/datasets/key``, built by ``build()`` when absent,
    stale (a source's sha256 changed) or corrupt (a file's sha256 differs from the manifest)."""
    folder = cache_dir / "datasets" / key
    manifest_path = folder / "manifest.json"
    source_sums = {p.name: sha256_file(p) for p in sources}

    problem = _cache_problem(folder, manifest_path, source_sums)
    if problem is None:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return {split: folder / f"{split}.txt" for split in manifest["splits"]}
    if problem:
        print(f"vaebench: {problem}; rebuilding {key} in {folder}", file=sys.stderr)

    splits = build()
    file_sums = {}
    try:
        for split, docs in splits.items():
            data = format_documents(docs)
            atomic_write(folder / f"{split}.txt", data)
            file_sums[f"{split}.txt"] = hashlib.sha256(data).hexdigest()
        manifest = {"format": _CACHE_FORMAT, "dataset": key, "splits": list(splits),
                    "files": file_sums, "sources": source_sums}
        atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    except OSError as err:
        raise UserError(
            f"cannot write the derived dataset {key} to {folder} ({err.strerror or err}); "
            "set VAEBENCH_CACHE_DIR (or pass cache_dir) to a writable directory"
        ) from err
    return {split: folder / f"{split}.txt" for split in splits}


def _cache_problem(folder: Path, manifest_path: Path, source_sums: dict[str, str]) -> str | None:
    """None if the cached dataset is usable; '' if it was never built; else why it must be rebuilt."""
    if not manifest_path.exists():
        return ""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files, splits = dict(manifest["files"]), list(manifest["splits"])
    except (ValueError, KeyError, TypeError):
        return f"cached manifest {manifest_path} is corrupt"
    if manifest.get("format") != _CACHE_FORMAT or manifest.get("sources") != source_sums:
        return f"the source files of {folder.name} changed"
    for split in splits:
        name = f"{split}.txt"
        path = folder / name
        if not path.is_file():
            return f"cached file {path} is missing"
        if name not in files or sha256_file(path) != files[name]:
            return f"cached file {path} is corrupt (sha256 mismatch)"
    return None


# --------------------------------------------------------------------------- public source files


@dataclass(frozen=True)
class SourceFile:
    """A public file read from ``data_dir``, and how to obtain it."""

    relpath: str
    sha256: str | None  # published checksum; None = unknown, not verified
    origin: str  # where it comes from, for messages
    fetch: Callable[[Path], None] = field(repr=False)  # downloads (at least) this file into data_dir

    def require(self, data_dir: Path, *, dataset: str, download: bool) -> Path:
        """Path of the file in ``data_dir``, downloaded first if missing and ``download``; verified."""
        path = data_dir / self.relpath
        how = f"download it with network access, or put it at {path}"
        if not path.is_file():
            if not download:
                raise UserError(f"dataset {dataset!r} needs {path}, which is missing (downloads disabled); {how}")
            try:
                self.fetch(data_dir)
            except Exception as err:  # no network, read-only data_dir, bad archive, ...
                reason = " ".join(f"{type(err).__name__}: {err}".split())  # one line
                reason = reason if len(reason) <= 150 else reason[:147] + "..."
                raise UserError(
                    f"dataset {dataset!r} needs {path}, which is missing, and the download from "
                    f"{self.origin} failed ({reason}); {how}"
                ) from err
            if not path.is_file():
                raise UserError(f"dataset {dataset!r}: the download from {self.origin} has no {self.relpath}; {how}")
        if self.sha256 is not None:
            actual = sha256_file(path)
            if actual != self.sha256:
                raise UserError(
                    f"{path} has sha256 {actual[:16]}..., not the published {self.sha256[:16]}... "
                    f"(dataset {dataset!r}); delete it and download it again, or put the original file there"
                )
        return path


def _fetch_gdrive_tarball(data_dir: Path, *, file_id: str, expect: str) -> None:
    """Download a tarball from Google Drive with gdown, unpack it in a temporary folder inside
    ``data_dir``, and move the folder holding ``expect`` (e.g. ``yahoo_data/``) into place."""
    import gdown  # needed only for downloads

    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        if gdown.download(id=file_id, output=str(archive), quiet=False) is None or not archive.is_file():
            raise OSError(f"gdown could not download Google Drive file {file_id}")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        found = next(unpacked.rglob(expect), None)
        if found is None:
            raise OSError(f"the archive has no {expect}")
        target = data_dir / Path(expect).parent
        if not target.exists():
            os.replace(found.parent, target)  # the whole, fully unpacked folder at once
        else:  # some files are already there (e.g. a partial mirror): add the missing ones
            for item in found.parent.iterdir():
                if item.is_file() and not (target / item.name).exists():
                    os.replace(item, target / item.name)


def _fetch_url(data_dir: Path, *, url: str, relpath: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    if not data:
        raise OSError(f"{url} returned no data")
    atomic_write(data_dir / relpath, data)


# Google Drive ids of the tarballs of the He et al. 2019 code release (Yang et al. 2017 data).
_GDRIVE_IDS = {"yahoo": "13azGlTuGdzWLCmgDmQPmvb_jcexVWX7i", "yelp": "1FT49oLNV8syhmGXEgiK6XTjEfMNqqEJJ"}
_YANG_SHA256 = {
    "yahoo.valid.txt": "3247ac3ffcc4d4bfd6216f2aaa617f6706cdc4081874da39245fe156825898d1",
    "yahoo.test.txt": "ad843c4363adbdd07d8055d9bf121e5f23c285760df43a0031b89d8538293075",
}
_SHEN_URL = "https://raw.githubusercontent.com/shentianxiao/language-style-transfer/master/data/yelp/"
_SHEN_SHA256 = {
    "sentiment.dev.0": "405ef6d4bfbc8bb92c3c55b496f315069cb5edb49ed34a07b1206341b83c344b",
    "sentiment.dev.1": "3509f6573411bbda2d5c071ed72ad276c12356c15c06205b8fdf74b217970c61",
    "sentiment.test.0": "b7466e8859e9948892a859af7938a82c801c99b69f884014082fd072a155bbf2",
    "sentiment.test.1": "a66e0ec3f0e1230ad4d2c822750a381cf6d99a99fa9b5ae79546f21ff79ed5c3",
}


def yang_file(corpus: str, split: str) -> SourceFile:
    """``{corpus}_data/{corpus}.{split}.txt`` of Yang et al. 2017 (corpus: yahoo or yelp)."""
    name = f"{corpus}.{split}.txt"
    return SourceFile(
        relpath=f"{corpus}_data/{name}",
        sha256=_YANG_SHA256.get(name),
        origin=f"Google Drive (id {_GDRIVE_IDS[corpus]}, He et al. 2019 release)",
        fetch=functools.partial(_fetch_gdrive_tarball, file_id=_GDRIVE_IDS[corpus],
                                expect=f"{corpus}_data/{corpus}.train.txt"),
    )


def shen_file(split: str, label: int) -> SourceFile:
    """``yelp_style/sentiment.{split}.{label}`` of Shen et al. 2017 (split: train, dev or test)."""
    name = f"sentiment.{split}.{label}"
    return SourceFile(
        relpath=f"yelp_style/{name}",
        sha256=_SHEN_SHA256.get(name),
        origin=_SHEN_URL + name,
        fetch=functools.partial(_fetch_url, url=_SHEN_URL + name, relpath=f"yelp_style/{name}"),
    )


# --------------------------------------------------------------------------- balanced subsets


def seeded_order(n: int, *, seed: int, tag: str) -> list[int]:
    """A permutation of ``range(n)`` fixed by (seed, tag): sorting by a keyed hash, so it is the
    same on every platform and library version (derived files are identical byte for byte)."""
    prefix = f"{seed}/{tag}/".encode()
    return sorted(range(n), key=lambda i: hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest())


def balanced_interleave(groups: Sequence[Sequence[Document]], *, seed: int, tag: str) -> list[Document]:
    """Shuffle each group (seeded), keep as many per group as the smallest group has, and interleave
    them: g0[0], g1[0], g0[1], g1[1], ... Any prefix whose length is a multiple of len(groups) is balanced."""
    shuffled = [[group[i] for i in seeded_order(len(group), seed=seed, tag=f"{tag}/{k}")]
                for k, group in enumerate(groups)]
    return [doc for row in zip(*shuffled) for doc in row]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str  # one line; says whether the data are a derived subset
    citation: str
    scale: str  # "paper", "cpu" or "user"
    builder: Callable[[Path, Path, bool], dict[str, Path]] = field(repr=False)  # (data_dir, cache_dir, download)
    family: str | None = None  # "yahoo" or "yelp": which side of the paper's "a | b" hyperparameters applies

    def prepare(self, data_dir=None, cache_dir=None, download: bool = True) -> dict[str, Path]:
        """{split: path} of the dataset's files, downloading and building what is missing."""
        return self.builder(resolve_data_dir(data_dir), resolve_cache_dir(cache_dir), download)


def _yang(corpus: str, dataset: str):
    def prepare(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
        return {s: yang_file(corpus, s).require(data_dir, dataset=dataset, download=download) for s in SPLITS}
    return prepare


def _prepare_yahoo_small(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    valid = yang_file("yahoo", "valid").require(data_dir, dataset="yahoo_small", download=download)
    test = yang_file("yahoo", "test").require(data_dir, dataset="yahoo_small", download=download)

    def build():
        docs = read_documents(valid)  # 10,000 documents (checksum-verified)
        return {"train": docs[:9000], "valid": docs[-1000:]}

    return {**cached_splits(cache_dir, "yahoo_small", [valid], build), "test": test}


def _prepare_yelp_small(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    files = {(s, y): shen_file(s, y).require(data_dir, dataset="yelp_small", download=download)
             for s in ("dev", "test") for y in (0, 1)}

    def build():
        train = balanced_interleave([read_documents(files["test", y], y) for y in (0, 1)], seed=SUBSET_SEED, tag="test")
        dev = balanced_interleave([read_documents(files["dev", y], y) for y in (0, 1)], seed=SUBSET_SEED, tag="dev")
        return {"train": train, "valid": dev[:10_000], "test": dev[10_000:20_000]}

    return cached_splits(cache_dir, f"yelp_small-seed{SUBSET_SEED}", list(files.values()), build)


def _prepare_short_yelp(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    files = {(s, y): shen_file(s, y).require(data_dir, dataset="short_yelp", download=download)
             for s in ("train", "dev", "test") for y in (0, 1)}

    def take(split: str, n: int) -> list[Document]:
        groups = [read_documents(files[split, y], y) for y in (0, 1)]
        return balanced_interleave(groups, seed=SUBSET_SEED, tag=split)[:n]

    def build():
        return {"train": take("train", 100_000), "valid": take("dev", 10_000), "test": take("test", 10_000)}

    return cached_splits(cache_dir, f"short_yelp-seed{SUBSET_SEED}", list(files.values()), build)


def _prepare_synthetic(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    from benchmarks import synthetic  # synthetic imports this module

    return synthetic.prepare_files(cache_dir, synthetic.SyntheticConfig())


_YANG_CITE = ("Yang, Hu, Salakhutdinov, Berg-Kirkpatrick. Improved variational autoencoders for text "
              "modeling using dilated convolutions. ICML 2017")
_SHEN_CITE = ("Shen, Lei, Barzilay, Jaakkola. Style transfer from non-parallel text by cross-alignment. "
              "NeurIPS 2017")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("yahoo", "Yahoo Answers documents, 100k/10k/10k, release of Yang et al. 2017 "
                    "(as used by He et al. 2019)", _YANG_CITE, "paper", _yang("yahoo", "yahoo"), "yahoo"),
        DatasetSpec("yelp", "Yelp15 reviews with 0-4 star labels, 100k/10k/10k, release of Yang et al. 2017 "
                    "(as used by He et al. 2019)", _YANG_CITE, "paper", _yang("yelp", "yelp"), "yelp"),
        DatasetSpec("short_yelp", "Yelp sentiment sentences of Shen et al. 2017, labels 0/1, balanced "
                    "100k/10k/10k subset of train/dev/test (derived)", _SHEN_CITE, "paper", _prepare_short_yelp, "yelp"),
        DatasetSpec("yahoo_small", "derived CPU-scale subset of Yahoo (Yang et al. 2017): train = first 9,000 "
                    "and valid = last 1,000 docs of yahoo.valid.txt, test = yahoo.test.txt",
                    _YANG_CITE, "cpu", _prepare_yahoo_small, "yahoo"),
        DatasetSpec("yelp_small", "derived CPU-scale subset of Yelp sentiment (Shen et al. 2017), labels 0/1: "
                    "train = sentiment.test balanced, valid/test = disjoint balanced 10k slices of sentiment.dev",
                    _SHEN_CITE, "cpu", _prepare_yelp_small, "yelp"),
        DatasetSpec("synthetic", "synthetic text after He et al. 2019: 2-d latent from a 16-component Gaussian "
                    "mixture, random LSTM LM, 10-token sentences, label = component, 20k/2k/2k",
                    "He, Spokoyny, Neubig, Berg-Kirkpatrick. Lagging inference networks and posterior collapse "
                    "in variational autoencoders. ICLR 2019", "cpu", _prepare_synthetic),
    )
}


def list_datasets() -> str:
    """The registered datasets as a printable table."""
    rows = [("name", "scale", "description")] + [(s.name, s.scale, s.description) for s in DATASETS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append("or a directory holding train.txt, valid.txt and test.txt (a user corpus)")
    return "\n".join(lines)


def get_dataset(dataset: str | os.PathLike) -> DatasetSpec:
    """The registered dataset of that name; else, for a path (a name with a path separator or an
    existing directory), a user corpus: ``train.txt``, ``valid.txt``, ``test.txt`` in that directory.
    A registered name wins over a same-named directory (write ``./name`` to mean the directory)."""
    if not isinstance(dataset, (str, os.PathLike)) or not os.fspath(dataset):
        raise UserError(f"dataset must be a name or a directory, got {dataset!r}; known: {', '.join(DATASETS)}")
    name = os.fspath(dataset)
    if isinstance(dataset, str) and name in DATASETS:
        return DATASETS[name]
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    if not (isinstance(dataset, os.PathLike) or any(s in name for s in separators) or Path(name).is_dir()):
        raise UserError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
            "(or give a directory holding train.txt, valid.txt, test.txt)"
        )
    folder = Path(name).expanduser().absolute()

    def prepare(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
        if not folder.is_dir():
            raise UserError(f"corpus directory {folder} does not exist; create it with train.txt, valid.txt, "
                            f"test.txt, or use a registered dataset ({', '.join(DATASETS)})")
        files = {s: folder / f"{s}.txt" for s in SPLITS}
        for path in files.values():
            if not path.is_file():
                raise UserError(f"user corpus {folder} has no {path.name}; put one tokenized document per line "
                                f"(optionally 'LABEL<TAB>text') at {path}")
        return files

    return DatasetSpec(folder.name, f"user corpus at {folder}", "", "user", prepare)


# --------------------------------------------------------------------------- load_corpus


def _check_int(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise UserError(f"{name} must be an integer >= {minimum} or None, got {value!r}"
                        + (" (it counts the 4 special tokens)" if minimum == len(SPECIALS) else ""))


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


# --------------------------------------------------------------------------- batches


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

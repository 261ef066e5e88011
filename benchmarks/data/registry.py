"""The dataset registry: every dataset the suite knows by name (:data:`DATASETS`), and user corpora
given as a directory (:func:`get_dataset`); each resolves to the paths of its three split files."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.errors import UserError

from .cache import resolve_cache_dir
from .documents import SPLITS, read_documents
from .sources import resolve_data_dir, yang_file
from .subsets import prepare_short_yelp, prepare_yahoo_small, prepare_yelp_small


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str  # one line; says whether the data are a derived subset
    citation: str
    scale: str  # "paper", "cpu" or "user"
    builder: Callable[[Path, Path, bool], dict[str, Path]] = field(repr=False)  # (data_dir, cache_dir, download)
    family: str | None = None  # "yahoo" or "yelp": which side of the paper's "a | b" hyperparameters applies
    # (a user corpus has the family it is given: get_dataset(path, family=...), the runner's --corpus-like)

    def prepare(self, data_dir=None, cache_dir=None, download: bool = True) -> dict[str, Path]:
        """{split: path} of the dataset's files, downloading and building what is missing."""
        return self.builder(resolve_data_dir(data_dir), resolve_cache_dir(cache_dir), download)


def _yang(corpus: str, dataset: str):
    def prepare(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
        return {s: yang_file(corpus, s).require(data_dir, dataset=dataset, download=download) for s in SPLITS}
    return prepare


def _prepare_synthetic(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    from benchmarks import synthetic  # synthetic imports this package

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
                    "100k/10k/10k subset of train/dev/test (derived)", _SHEN_CITE, "paper", prepare_short_yelp, "yelp"),
        DatasetSpec("yahoo_small", "derived CPU-scale subset of Yahoo (Yang et al. 2017): train = first 9,000 "
                    "and valid = last 1,000 docs of yahoo.valid.txt, test = yahoo.test.txt",
                    _YANG_CITE, "cpu", prepare_yahoo_small, "yahoo"),
        DatasetSpec("yelp_small", "derived CPU-scale subset of Yelp sentiment (Shen et al. 2017), labels 0/1: "
                    "train = sentiment.test balanced, valid/test = disjoint balanced 10k slices of sentiment.dev",
                    _SHEN_CITE, "cpu", prepare_yelp_small, "yelp"),
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


FAMILIES = ("yahoo", "yelp")  # models.variants.FAMILIES: the sides of the paper's "a | b" rows


def check_family(family: str | None) -> None:
    """One UserError line unless ``family`` is None or a side of the paper's ``a | b`` rows."""
    if family is not None and family not in FAMILIES:
        raise UserError(f"--corpus-like must be one of {', '.join(FAMILIES)}, got {family!r}")


def get_dataset(dataset: str | os.PathLike, family: str | None = None) -> DatasetSpec:
    """The registered dataset of that name; else, for a path (a name with a path separator or an
    existing directory), a user corpus: ``train.txt``, ``valid.txt``, ``test.txt`` in that directory.
    A registered name wins over a same-named directory (write ``./name`` to mean the directory).

    ``family`` ("yahoo" or "yelp") is the family a user corpus takes: whose side of the paper's
    ``a | b`` rows applies to it (``python -m benchmarks.run --corpus-like``); without one a corpus
    has none, and a two-sided row asks for a side. A registered dataset has its own family."""
    if not isinstance(dataset, (str, os.PathLike)) or not os.fspath(dataset):
        raise UserError(f"dataset must be a name or a directory, got {dataset!r}; known: {', '.join(DATASETS)}")
    check_family(family)
    name = os.fspath(dataset)
    if isinstance(dataset, str) and name in DATASETS:
        spec = DATASETS[name]
        if family is not None and family != spec.family:
            raise UserError(f"--corpus-like {family} is for corpus directories; {name} is a registered dataset "
                            f"({spec.family or 'no'} family): drop the option or give a directory")
        return spec
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

    return DatasetSpec(folder.name, f"user corpus at {folder}", "", "user", prepare, family)


def is_corpus(dataset: str | os.PathLike) -> bool:
    """Whether ``dataset`` names a user corpus (a directory) rather than a registered dataset; an
    unknown name is one UserError line."""
    return get_dataset(dataset).scale == "user"


@dataclass(frozen=True)
class CorpusFacts:
    """What the runner needs to know of a user corpus before it plans runs on it."""

    path: Path
    documents: dict[str, int]  # split -> documents
    labelled: dict[str, bool]  # split -> whether its documents carry labels
    shortest: dict[str, int]  # split -> tokens of its shortest document

    @property
    def all_labelled(self) -> bool:
        return all(self.labelled.values())


def inspect_corpus(dataset: str | os.PathLike) -> CorpusFacts:
    """Read a user corpus's three splits as training will, before any run: a missing directory or
    file, an empty file or a malformed line is one UserError line (nothing is written). Read once
    per version of the files."""
    spec = get_dataset(dataset)
    if spec.scale != "user":
        raise UserError(f"{os.fspath(dataset)!r} is a registered dataset, not a corpus directory")
    files = spec.builder(Path(), Path(), False)  # a corpus's files are its own: no data or cache dir
    stamps = tuple((str(path), path.stat().st_mtime_ns, path.stat().st_size) for path in files.values())
    return _inspect(stamps)


@functools.lru_cache(maxsize=16)
def _inspect(stamps: tuple) -> CorpusFacts:
    documents, labelled, shortest = {}, {}, {}
    for split, (path, _, _) in zip(SPLITS, stamps):
        docs = read_documents(path)
        documents[split], labelled[split] = len(docs), docs[0].label is not None
        shortest[split] = min(len(d.tokens) for d in docs)
    return CorpusFacts(Path(stamps[0][0]).parent, documents, labelled, shortest)

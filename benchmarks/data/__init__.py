"""Corpora, vocabulary and mini-batching for the Scale-VAE benchmark suite.

Data follow the text-VAE protocol of He et al. 2019 (see ``shared/notes/protocol.md``):
one tokenized, lower-cased document per line, ``<s>``/``</s>`` added around each
document, vocabulary taken from the training split.

One module per concern; each imports only those listed before it (and
``benchmarks.files``, ``benchmarks.errors``):

* ``documents``: the file format (``read_documents``, ``format_documents``), ``Vocabulary``.
* ``batching``: ``BatchLoader`` and ``Batch``.
* ``sources``: the public files in ``data_dir``, their downloads and published checksums.
* ``cache``: derived data in ``cache_dir``, with a manifest of sha256 sums.
* ``subsets``: the derived subsets (yahoo_small, yelp_small, short_yelp), seeded and balanced.
* ``registry``: the datasets by name (``DATASETS``, ``get_dataset``) and user corpora.
* ``corpus``: ``load_corpus`` and the loaded ``Corpus``.

``data_dir`` (argument, else ``$VAEBENCH_DATA_DIR``, else ``./data``) holds the public
releases exactly as downloaded; ``cache_dir`` (argument, else ``$VAEBENCH_CACHE_DIR``, else
``~/.cache/vaebench``) holds everything derived. Derived files are never written next to
the sources. The names below are the package's interface: ``from benchmarks import data``.
"""

from benchmarks.files import atomic_torch_save, atomic_write, sha256_file

from .batching import MODES, Batch, BatchLoader
from .cache import cached_splits, resolve_cache_dir
from .corpus import Corpus, load_corpus
from .documents import BOS, EOS, PAD, SPECIALS, SPLITS, UNK, Document, Vocabulary, format_documents, read_documents
from .registry import DATASETS, CorpusFacts, DatasetSpec, get_dataset, inspect_corpus, is_corpus, list_datasets
from .sources import SourceFile, resolve_data_dir, shen_file, yang_file
from .subsets import SUBSET_SEED, balanced_interleave, seeded_order

__all__ = [
    "BOS", "DATASETS", "EOS", "MODES", "PAD", "SPECIALS", "SPLITS", "SUBSET_SEED", "UNK",
    "Batch", "BatchLoader", "Corpus", "CorpusFacts", "DatasetSpec", "Document", "SourceFile", "Vocabulary",
    "atomic_torch_save", "atomic_write", "balanced_interleave", "cached_splits", "format_documents",
    "get_dataset", "inspect_corpus", "is_corpus", "list_datasets", "load_corpus", "read_documents", "resolve_cache_dir",
    "resolve_data_dir", "seeded_order", "sha256_file", "shen_file", "yang_file",
]

"""Behaviour of the data layer: readers, registry, derived subsets, caches, batching.

No network: downloads are exercised with stand-ins for gdown and urllib. The read-only mirror
of public files is the checkout's ``../shared/data``; derived files go to temporary folders.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import data as D
from benchmarks import synthetic as S
from benchmarks.errors import UserError

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mirror = pytest.mark.skipif(not (DATA_DIR / "yahoo_data").is_dir(), reason=f"no data mirror at {DATA_DIR}")


@pytest.fixture(autouse=True)
def _environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEBENCH_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("VAEBENCH_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def yahoo_small(cache):
    return D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=cache)


@pytest.fixture(scope="module")
def yelp_small(cache):
    return D.load_corpus("yelp_small", data_dir=DATA_DIR, cache_dir=cache)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def user_corpus(folder: Path, train="a b c\nb c\n", valid="a b\n", test="c a\n") -> Path:
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        write(folder / f"{split}.txt", text)
    return folder


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_ids_caps_unk_and_round_trip():
    docs = [D.Document(("b", "a", "b", "d")), D.Document(("a", "b", "_UNK", "<s>", "c"))]
    vocab = D.Vocabulary.build(docs, max_size=None)
    # specials first, then by decreasing frequency, ties alphabetical; specials in the text are no words
    assert vocab.words == ["<pad>", "<s>", "</s>", "_UNK", "b", "a", "c", "d"]
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert len(vocab) == 8

    capped = D.Vocabulary.build(docs, max_size=6)
    assert capped.words == ["<pad>", "<s>", "</s>", "_UNK", "b", "a"]
    assert capped.encode(["a", "c", "zebra", "_UNK", "<s>", "<pad>"]) == [1, 5, 3, 3, 3, 3, 3, 2]

    tokens = ["b", "a", "c", "d", "b"]
    ids = vocab.encode(tokens)
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert vocab.decode(ids) == tokens
    assert vocab.decode(torch.tensor(ids + [0, 0])) == tokens  # tensors and padding
    assert vocab.decode([1, 4, 0, 5, 2, 6, 7]) == ["b", "a"]  # stops at </s>, drops <pad>
    assert capped.decode(capped.encode(tokens)) == ["b", "a", "_UNK", "_UNK", "b"]

    assert D.Vocabulary.from_json(vocab.to_json()) == vocab
    with pytest.raises(UserError, match=">= 4.*special"):
        D.Vocabulary.build(docs, max_size=3)
    with pytest.raises(UserError):
        D.Vocabulary.from_json({"words": ["a"]})


# --------------------------------------------------------------------------- derived subsets


@needs_mirror
def test_yahoo_small_is_two_slices_of_yahoo_valid(yahoo_small, cache):
    assert (len(yahoo_small.train), len(yahoo_small.valid), len(yahoo_small.test)) == (9000, 1000, 10000)
    source = D.read_documents(DATA_DIR / "yahoo_data" / "yahoo.valid.txt")
    assert yahoo_small.train == source[:9000] and yahoo_small.valid == source[9000:]
    assert yahoo_small.test == D.read_documents(DATA_DIR / "yahoo_data" / "yahoo.test.txt")
    assert "derived" in yahoo_small.description and "\n" not in yahoo_small.description
    assert yahoo_small.labels("train") is None
    # derived files live in the cache; the test split is read in place
    files = D.DATASETS["yahoo_small"].prepare(DATA_DIR, cache, download=False)
    assert files["train"].parent.parent.parent == cache and files["test"].parent == DATA_DIR / "yahoo_data"
    # the release's own _UNK is our UNK
    assert yahoo_small.vocab.words[3] == "_UNK" and "_UNK" not in yahoo_small.vocab.words[4:]
    encoded = yahoo_small.encoded("valid")
    assert encoded is yahoo_small.encoded("valid") and len(encoded) == 1000
    assert yahoo_small.vocab.decode(encoded[0]) == list(yahoo_small.valid[0].tokens)


@needs_mirror
def test_max_len_filter_then_prefix_caps_then_vocabulary(yahoo_small, cache):
    corpus = D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=cache, max_len=40,
                           train_docs=300, valid_docs=50, test_docs=20, vocab_size=500)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (300, 50, 20)
    for split in D.SPLITS:
        assert all(len(d.tokens) <= 40 for d in corpus.split(split))
    assert corpus.train == [d for d in yahoo_small.train if len(d.tokens) <= 40][:300]
    assert corpus.test == [d for d in yahoo_small.test if len(d.tokens) <= 40][:20]
    assert len(corpus.vocab) == 500  # capped, specials included, from the truncated train split
    assert corpus.vocab == D.Vocabulary.build(corpus.train, 500)
    assert "max_len=40" in corpus.description
    with pytest.raises(UserError, match="max_len"):
        D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=cache, max_len=1)
    with pytest.raises(UserError, match="train_docs"):
        D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=cache, train_docs=0)


def _interleaved(labels):
    return labels == [k % 2 for k in range(len(labels))]


@needs_mirror
def test_yelp_small_balanced_interleaved_and_disjoint(yelp_small, cache):
    for split in D.SPLITS:
        assert _interleaved(yelp_small.labels(split)), split
    assert len(yelp_small.train) == 2 * 50278  # the smaller class of sentiment.test
    assert (len(yelp_small.valid), len(yelp_small.test)) == (10000, 10000)

    def source(split, label):
        return Counter(d.tokens for d in D.read_documents(DATA_DIR / "yelp_style" / f"sentiment.{split}.{label}"))

    for label in (0, 1):
        # valid and test are disjoint draws from dev: together they use no sentence more often than dev has it
        used = Counter(d.tokens for d in yelp_small.valid + yelp_small.test if d.label == label)
        assert not used - source("dev", label)
        assert not Counter(d.tokens for d in yelp_small.train if d.label == label) - source("test", label)

    small = D.load_corpus("yelp_small", data_dir=DATA_DIR, cache_dir=cache, train_docs=1000, test_docs=300)
    assert Counter(small.labels("train")) == {0: 500, 1: 500}
    assert Counter(small.labels("test")) == {0: 150, 1: 150}


def test_balanced_interleave_is_seeded_and_balanced():
    groups = [[D.Document((f"n{i}",), 0) for i in range(7)], [D.Document((f"p{i}",), 1) for i in range(4)]]
    mixed = D.balanced_interleave(groups, seed=1, tag="t")
    assert [d.label for d in mixed] == [0, 1] * 4
    assert mixed == D.balanced_interleave(groups, seed=1, tag="t")
    assert mixed != D.balanced_interleave(groups, seed=2, tag="t")
    assert sorted(D.seeded_order(50, seed=3, tag="x")) == list(range(50))


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_labelled_and_fixed_length(tmp_path):
    config = S.SyntheticConfig(train=300, valid=40, test=40)
    first = S.prepare_files(tmp_path / "a", config)
    again = S.prepare_files(tmp_path / "b", config)
    other = S.prepare_files(tmp_path / "c", S.SyntheticConfig(train=300, valid=40, test=40, seed=1))
    assert config.key() in str(first["train"]) and "seed0" in config.key()
    for split in D.SPLITS:
        assert first[split].read_bytes() == again[split].read_bytes()
        assert first[split].read_bytes() != other[split].read_bytes()
        docs = D.read_documents(first[split])
        assert len(docs) == getattr(config, split)
        assert all(len(d.tokens) == 10 for d in docs)
        assert all(re.fullmatch(r"w\d{1,3}", t) for d in docs for t in d.tokens)
        assert {d.label for d in docs} <= set(range(16))


def test_synthetic_sentences_depend_clearly_on_their_component():
    config = S.SyntheticConfig(train=4000, valid=1, test=1000)
    splits = S.generate(config)

    def bag_of_words(docs):
        counts = np.zeros((len(docs), config.vocab_size))
        for row, doc in enumerate(docs):
            for token in doc.tokens:
                counts[row, int(token[1:])] += 1
        return counts, np.array([d.label for d in docs])

    x_train, y_train = bag_of_words(splits["train"])
    x_test, y_test = bag_of_words(splits["test"])
    log_probs = np.log(np.stack([x_train[y_train == k].sum(0) for k in range(16)]) + 0.1)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    accuracy = ((x_test @ log_probs.T).argmax(1) == y_test).mean()
    assert accuracy > 0.5  # chance is 1/16; naive Bayes on word counts finds the component most of the time


def test_synthetic_registry_entry_default_sizes(cache):
    corpus = D.load_corpus("synthetic", cache_dir=cache)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (20000, 2000, 2000)
    assert len(corpus.vocab) <= 1004 and set(corpus.labels("train")) == set(range(16))


# --------------------------------------------------------------------------- user corpora and errors


def test_user_corpus_with_and_without_labels(tmp_path):
    plain = D.load_corpus(str(user_corpus(tmp_path / "plain")))
    assert plain.name == "plain" and plain.labels("train") is None
    assert plain.train == [D.Document(("a", "b", "c")), D.Document(("b", "c"))]
    labelled = user_corpus(tmp_path / "labelled", train="1\tx y\n\n  \n0\tz\n2\t\n", valid="3\tx\n", test="0\ty\r\n")
    corpus = D.load_corpus(labelled)  # a Path works too; blank lines and empty texts are skipped
    assert corpus.train == [D.Document(("x", "y"), 1), D.Document(("z",), 0)]
    assert corpus.labels("valid") == [3] and corpus.test == [D.Document(("y",), 0)]
    batch = next(iter(corpus.loader("train", 2, shuffle=False)))
    assert batch.labels.tolist() == [1, 0]


def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'yahooo'.*yahoo_small.*synthetic"):
        D.load_corpus("yahooo")
    missing = user_corpus(tmp_path / "missing")
    (missing / "valid.txt").unlink()
    with pytest.raises(UserError, match=r"no valid\.txt"):
        D.load_corpus(str(missing))
    with pytest.raises(UserError, match="does not exist"):
        D.load_corpus(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="empty"):
        D.load_corpus(str(user_corpus(tmp_path / "empty", valid="\n \n")))
    with pytest.raises(UserError, match=r"test\.txt, line 2: byte 0xff is not valid UTF-8"):
        D.load_corpus(str(user_corpus(tmp_path / "bytes", test=b"ok\nbad \xff\n")))
    with pytest.raises(UserError, match=r"train\.txt, line 2: label 'pos' .* not an integer"):
        D.load_corpus(str(user_corpus(tmp_path / "label", train="1\tgood\npos\tbad\n")))
    with pytest.raises(UserError, match=r"line 2: has no label but line 1 has one"):
        D.load_corpus(str(user_corpus(tmp_path / "mixed", train="1\tgood\nbad\n")))
    with pytest.raises(UserError, match="unknown batching mode"):
        D.BatchLoader([[1, 2], [1, 2]], 2, pad_id=0, mode="sorted")
    with pytest.raises(UserError, match="by_label"):
        D.BatchLoader([[1, 2], [1, 2]], 2, pad_id=0, mode="by_label")


@needs_mirror
def test_missing_paper_scale_file_without_download(tmp_path):
    with pytest.raises(UserError) as err:
        D.load_corpus("yahoo", data_dir=DATA_DIR, cache_dir=tmp_path, download=False)
    message = str(err.value)
    assert "yahoo.train.txt" in message and "'yahoo'" in message
    assert "download it with network access, or put it at" in message and "\n" not in message
    with pytest.raises(UserError, match=r"yelp_style/sentiment\.train\.0"):
        D.load_corpus("short_yelp", data_dir=DATA_DIR, cache_dir=tmp_path, download=False)


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    import gdown

    def offline(**kwargs):
        raise ConnectionError("Failed to connect to drive.google.com")

    monkeypatch.setattr(gdown, "download", offline)
    with pytest.raises(UserError, match=r"yelp\.train\.txt.*download from Google Drive.*failed \(ConnectionError: Failed to connect"):
        D.load_corpus("yelp", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "data").iterdir())  # the temporary download folder is gone


@needs_mirror
@pytest.mark.parametrize("partial", [False, True])
def test_download_unpacks_and_moves_into_place(tmp_path, monkeypatch, partial):
    """A stand-in for gdown serves a tarball laid out like the release (real valid/test files)."""
    import gdown

    fake_train = tmp_path / "fake" / "yahoo.train.txt"
    write(fake_train, "a question _UNK\nan answer\n")

    def serve(id, output, quiet):
        assert id == "13azGlTuGdzWLCmgDmQPmvb_jcexVWX7i"
        with tarfile.open(output, "w") as tar:
            tar.add(fake_train, arcname="yahoo_data/yahoo.train.txt")
            for split in ("valid", "test"):
                tar.add(DATA_DIR / "yahoo_data" / f"yahoo.{split}.txt", arcname=f"yahoo_data/yahoo.{split}.txt")
        return output

    monkeypatch.setattr(gdown, "download", serve)
    data_dir = tmp_path / "data"
    if partial:  # valid/test already there: only the missing file is added
        (data_dir / "yahoo_data").mkdir(parents=True)
        (data_dir / "yahoo_data" / "yahoo.test.txt").symlink_to(DATA_DIR / "yahoo_data" / "yahoo.test.txt")
    corpus = D.load_corpus("yahoo", data_dir=data_dir, cache_dir=tmp_path / "cache", test_docs=5)
    assert corpus.train == [D.Document(("a", "question", "_UNK")), D.Document(("an", "answer"))]
    assert len(corpus.valid) == 10000 and len(corpus.test) == 5
    assert sorted(p.name for p in data_dir.iterdir()) == ["yahoo_data"]  # no temporary leftovers

    write(data_dir / "yahoo_data" / "yahoo.valid.txt", "tampered\n")
    with pytest.raises(UserError, match="sha256"):
        D.load_corpus("yahoo", data_dir=data_dir, cache_dir=tmp_path / "cache")


@needs_mirror
def test_short_yelp_downloads_train_files_and_balances(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    (data_dir / "yelp_style").mkdir(parents=True)
    for name in ("dev.0", "dev.1", "test.0", "test.1"):
        (data_dir / "yelp_style" / f"sentiment.{name}").symlink_to(DATA_DIR / "yelp_style" / f"sentiment.{name}")
    fetched = []

    def urlopen(url, timeout):
        fetched.append(url)
        label = url[-1]
        count = 30 if label == "0" else 45
        return io.BytesIO("".join(f"sentence {label} number {i}\n" for i in range(count)).encode())

    monkeypatch.setattr(D.sources.urllib.request, "urlopen", urlopen)
    corpus = D.load_corpus("short_yelp", data_dir=data_dir, cache_dir=tmp_path / "cache")
    assert fetched == [D.sources._SHEN_URL + "sentiment.train.0", D.sources._SHEN_URL + "sentiment.train.1"]
    assert (data_dir / "yelp_style" / "sentiment.train.1").is_file()
    assert len(corpus.train) == 60 and _interleaved(corpus.labels("train"))  # limited by the smaller class
    assert (len(corpus.valid), len(corpus.test)) == (10000, 10000)
    assert _interleaved(corpus.labels("valid")) and _interleaved(corpus.labels("test"))


@needs_mirror
def test_corrupt_cache_file_is_detected_and_rebuilt(tmp_path, capsys):
    first = D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=tmp_path, train_docs=3)
    train_file = D.DATASETS["yahoo_small"].prepare(DATA_DIR, tmp_path)["train"]
    original = train_file.read_bytes()
    assert capsys.readouterr().err == ""
    train_file.write_bytes(original.replace(b"a", b"b", 1))  # same size, one byte changed
    again = D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=tmp_path, train_docs=3)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupt" in err and "rebuilding" in err and str(train_file) in err
    assert train_file.read_bytes() == original and again.train == first.train
    D.load_corpus("yahoo_small", data_dir=DATA_DIR, cache_dir=tmp_path, train_docs=3)
    assert capsys.readouterr().err == ""  # healthy again


def test_list_datasets_and_directories():
    table = D.list_datasets()
    for name in ("yahoo", "yelp", "short_yelp", "yahoo_small", "yelp_small", "synthetic"):
        assert re.search(rf"^{name}\s", table, re.M)
    for spec in D.DATASETS.values():
        assert spec.citation and "\n" not in spec.description
    assert D.resolve_data_dir(None) == DATA_DIR
    assert D.resolve_data_dir("elsewhere") == Path("elsewhere")


def test_resolve_cache_dir_creates_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEBENCH_CACHE_DIR", str(tmp_path / "env" / "cache"))
    assert D.resolve_cache_dir() == tmp_path / "env" / "cache" and (tmp_path / "env" / "cache").is_dir()
    assert D.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg" and (tmp_path / "arg").is_dir()


# --------------------------------------------------------------------------- batching


def toy_split(n: int, seed: int = 0, labels: int = 3):
    rng = np.random.default_rng(seed)
    encoded = [[1, *rng.integers(4, 50, size=int(rng.integers(1, 30))).tolist(), 2] for _ in range(n)]
    return encoded, [int(y) for y in rng.integers(0, labels, size=n)]


def epoch_indices(loader) -> list[list[int]]:
    return [b.index.tolist() for b in loader]


@pytest.mark.parametrize("mode", D.MODES)
def test_every_mode_covers_each_document_once_with_no_tiny_batch(mode):
    for n in (2, 3, 5, 17, 64, 101):
        for batch_size in (2, 3, 4, 16, 32):
            encoded, labels = toy_split(n, labels=1 if n < 20 else 3)
            loader = D.BatchLoader(encoded, batch_size, pad_id=0, labels=labels, mode=mode, seed=n)
            for _ in range(3):
                batches = list(loader)
                assert len(batches) == len(loader)
                assert sorted(i for b in batches for i in b.index.tolist()) == list(range(n))
                if mode == "equal_length":  # He et al.'s batches: one length each, one document at the least
                    assert all(len(set(b.lengths.tolist())) == 1 and b.size <= batch_size for b in batches)
                    continue
                assert min(b.size for b in batches) >= 2, (mode, n, batch_size)
                assert max(b.size for b in batches) < batch_size + max(2, batch_size // 2)


def test_batch_tensors_layout_and_num_words():
    encoded, labels = toy_split(40)
    loader = D.BatchLoader(encoded, 8, pad_id=0, labels=labels, mode="random", seed=3)
    for batch in loader:
        assert batch.tokens.dtype == torch.long and batch.tokens.shape == (batch.size, int(batch.lengths.max()))
        assert batch.lengths.tolist() == sorted(batch.lengths.tolist(), reverse=True)
        for row, i in enumerate(batch.index.tolist()):
            length = len(encoded[i])
            assert batch.lengths[row] == length and batch.labels[row] == labels[i]
            assert batch.tokens[row, :length].tolist() == encoded[i]  # <s> first, </s> at lengths-1
            assert (batch.tokens[row, length:] == 0).all()
        assert batch.num_words == sum(len(encoded[i]) - 1 for i in batch.index.tolist())  # </s> yes, <s> no
        moved = batch.to("cpu")
        assert moved.num_words == batch.num_words and torch.equal(moved.tokens, batch.tokens)
    no_labels = next(iter(D.BatchLoader(encoded, 8, pad_id=0)))
    assert no_labels.labels is None


@needs_mirror
def test_length_mode_pads_little_and_reorders_fixed_batches(yahoo_small):
    encoded = yahoo_small.encoded("train")

    def padding(loader):
        return 1 - sum(int(b.lengths.sum()) for b in loader) / sum(b.tokens.numel() for b in loader)

    by_length = yahoo_small.loader("train", 32, mode="length", seed=0)
    randomly = yahoo_small.loader("train", 32, mode="random", seed=0)
    assert padding(by_length) < 0.02 < 0.3 < padding(randomly)
    first, second = epoch_indices(by_length), epoch_indices(by_length)
    assert sorted(map(tuple, first)) == sorted(map(tuple, second)) and first != second
    ordered = D.BatchLoader(encoded, 32, pad_id=0, mode="length", shuffle=False)
    lengths = [int(b.lengths.max()) for b in ordered]
    assert lengths == sorted(lengths) and epoch_indices(ordered) == epoch_indices(ordered)


def test_random_mode_keeps_its_partition_and_resplit_redraws_it():
    encoded, _ = toy_split(200)
    fixed = D.BatchLoader(encoded, 16, pad_id=0, mode="random", seed=5)
    first, second = epoch_indices(fixed), epoch_indices(fixed)
    assert first != second and sorted(map(sorted, first)) == sorted(map(sorted, second))
    assert max(first[0]) - min(first[0]) > 16  # not contiguous slices
    resplit = D.BatchLoader(encoded, 16, pad_id=0, mode="resplit", seed=5)
    a, b = epoch_indices(resplit), epoch_indices(resplit)
    assert {frozenset(x) for x in a} != {frozenset(x) for x in b}
    frozen = D.BatchLoader(encoded, 16, pad_id=0, mode="resplit", seed=5, shuffle=False)
    assert epoch_indices(frozen) == epoch_indices(frozen)


def test_by_label_batches_are_label_pure():
    encoded, labels = toy_split(300, labels=16)
    loader = D.BatchLoader(encoded, 8, pad_id=0, labels=labels, mode="by_label", seed=2)
    for _ in range(2):
        for batch in loader:
            assert len(set(batch.labels.tolist())) == 1


@pytest.mark.parametrize("mode", D.MODES)
def test_same_seed_same_stream_independent_of_global_rng(mode):
    encoded, labels = toy_split(120)
    make = lambda seed: D.BatchLoader(encoded, 10, pad_id=0, labels=labels, mode=mode, seed=seed)  # noqa: E731
    a, b, c = make(7), make(7), make(8)
    stream_a = [epoch_indices(a) for _ in range(3)]
    torch.manual_seed(123)
    np.random.seed(123)
    assert stream_a == [epoch_indices(b) for _ in range(3)]  # global seeds do not matter
    assert stream_a != [epoch_indices(c) for _ in range(3)]
    # ... and the loader does not consume the global streams (model RNG stays independent)
    torch.manual_seed(123)
    np.random.seed(123)
    epoch_indices(make(9))
    after = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(after[0], torch.rand(3)) and np.array_equal(after[1], np.random.rand(3))


@pytest.mark.parametrize("mode", D.MODES)
@pytest.mark.parametrize("stop_after", [0, 5, 12, 13])  # 12 batches per epoch: mid-epoch and boundaries
def test_state_dict_resumes_the_identical_stream(mode, stop_after, tmp_path):
    encoded, labels = toy_split(120)
    make = lambda: D.BatchLoader(encoded, 10, pad_id=0, labels=labels, mode=mode, seed=11)  # noqa: E731
    live = make()
    epoch = iter(live)
    consumed = 0
    while consumed < stop_after:  # first epoch, then part of the second
        try:
            next(epoch)
            consumed += 1
        except StopIteration:
            epoch = iter(live)
    torch.save(live.state_dict(), tmp_path / "loader.pt")

    rest_live = [b.index.tolist() for b in epoch]  # the rest of the epoch in progress ...
    rest_live += [idx for _ in range(2) for idx in epoch_indices(live)]  # ... then full epochs
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "loader.pt"))
    rest_resumed = [idx for _ in range(3) for idx in epoch_indices(resumed)]
    assert rest_resumed[: len(rest_live)] == rest_live
    if stop_after == 0:  # nothing consumed yet: the resumed stream is the fresh one
        fresh = make()
        assert rest_resumed == [idx for _ in range(3) for idx in epoch_indices(fresh)]


def test_load_state_dict_rejects_other_settings():
    encoded, _ = toy_split(50)
    state = D.BatchLoader(encoded, 10, pad_id=0, seed=1).state_dict()
    with pytest.raises(UserError, match="same data, batch size, mode and seed"):
        D.BatchLoader(encoded, 5, pad_id=0, seed=1).load_state_dict(state)

"""The public source files: where they live (``data_dir``), how they are downloaded, and their
published checksums.

``data_dir`` (argument, else ``$VAEBENCH_DATA_DIR``, else ``./data``) holds the public releases
exactly as downloaded (``yahoo_data/``, ``yelp_data/``, ``yelp_style/``). It is a download cache:
missing files are fetched when ``download=True``, files with a published checksum are verified.
"""

from __future__ import annotations

import functools
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.errors import UserError
from benchmarks.files import atomic_write, sha256_file


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Explicit argument, else ``$VAEBENCH_DATA_DIR``, else ``./data``."""
    chosen = data_dir if data_dir is not None else os.environ.get("VAEBENCH_DATA_DIR") or "data"
    return Path(chosen).expanduser()


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

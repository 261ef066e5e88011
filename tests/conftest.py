"""Shared test fixtures: the read-only data mirror and a private cache/results dir."""
import os
from pathlib import Path

import pytest

# Tiny test models run many times faster on one thread per process, and the CLI
# subprocesses of the tests inherit this; CI has 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``needs_cuda`` (registered in pytest.ini) skip where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir() -> Path:
    if not (DATA_DIR / "yahoo_data" / "yahoo.valid.txt").exists():
        pytest.fail(f"the data mirror is missing at {DATA_DIR}; CI expects ../shared/data beside the checkout")
    return DATA_DIR

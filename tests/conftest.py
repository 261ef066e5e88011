"""Shared test fixtures: the read-only data mirror and a private cache/results dir."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    if not (DATA_DIR / "yahoo_data" / "yahoo.valid.txt").exists():
        pytest.fail(f"the data mirror is missing at {DATA_DIR}; CI expects ../shared/data beside the checkout")
    return DATA_DIR

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# No test may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT

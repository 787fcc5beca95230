"""The benchmark gate builds its tables at the small scale once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import SCALES, Scale, ensure_mysql_lineitem, ensure_tables


@pytest.fixture(scope="session")
def small() -> Scale:
    scale = SCALES["small"]
    ensure_tables(scale)
    return scale


@pytest.fixture(scope="session")
def small_mysql() -> Scale:
    scale = SCALES["small"]
    ensure_mysql_lineitem(scale)
    return scale

"""The benchmark gate builds its tables at the small and medium scales once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import MYSQL_LINEITEM, SCALES, Scale, ensure_mysql_lineitem, ensure_tables

GATE_SCALES = ("small", "medium")


@pytest.fixture(scope="session", params=GATE_SCALES)
def scale(request: pytest.FixtureRequest) -> Scale:
    """A PostgreSQL database with the three tables at this scale."""
    built = SCALES[request.param]
    ensure_tables(built)
    return built


@pytest.fixture(scope="session", params=GATE_SCALES)
def mysql_scale(request: pytest.FixtureRequest) -> tuple[Scale, int]:
    """A MariaDB database with lineitem (and lineitem_uuid) at this scale, and their row count."""
    built = SCALES[request.param]
    ensure_mysql_lineitem(built, ("lineitem", "lineitem_uuid"))
    return built, MYSQL_LINEITEM[built.name]

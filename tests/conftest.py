"""Fixtures: a real PostgreSQL (never mocked), unique tables, readers of written files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

PG_URL = os.environ.get("RIVET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url(sslmode: str = "disable") -> str:
    """The test database URL with an sslmode."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}sslmode={sslmode}"


@pytest.fixture(scope="session")
def pg_conn() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.exit(f"PostgreSQL is not reachable at {PG_URL}: {e} (run scripts/ensure-services)", returncode=1)
    yield conn
    conn.close()


@pytest.fixture
def pg(pg_conn: psycopg.Connection) -> psycopg.Connection:
    return pg_conn


@pytest.fixture
def pg_table(pg_conn: psycopg.Connection) -> Iterator[Callable[[str], str]]:
    """Create uniquely named tables from a body SQL using ``{t}``; drop them afterwards."""
    made: list[str] = []

    def make(sql: str) -> str:
        name = f"rt_{uuid.uuid4().hex[:10]}"
        pg_conn.execute(sql.format(t=name))
        made.append(name)
        return name

    yield make
    for name in made:
        pg_conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    return d


def visible_parts(directory: Path) -> list[Path]:
    """Files a downstream reader would pick up (not hidden staging files)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".parquet", ".csv", ".gz", ".zst"))

"""The orders table the table-format tests export (its fixture is in conftest.py)."""

from __future__ import annotations

import collections
import json
from pathlib import Path


def insert_orders(pg, table: str, first: int, last: int) -> None:
    """Rows ``first``..``last``: a decimal, a timestamptz and a text with NULLs."""
    pg.execute(
        f"INSERT INTO {table} SELECT i, i * 1.125, timestamptz '2024-01-01 00:00+00' + i * interval '1 minute', "
        f"CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END FROM generate_series({first}, {last}) i"
    )


def source_rows(pg, table: str) -> collections.Counter:
    return collections.Counter(pg.execute(f"SELECT id, amount, at, note FROM {table}").fetchall())


def orders_config(home: Path, export: dict, source: dict | None = None, *, fmt: str) -> Path:
    """``home/rivet.yaml``: one export, ``orders``, as ``fmt`` into ``home/out`` (PostgreSQL unless ``source``)."""
    from tests.conftest import PG_URL

    destination = {"type": "local", "path": str(home / "out")}
    body = {"name": "orders", "format": fmt, "destination": destination, **export}
    config = home / "rivet.yaml"
    config.write_text(json.dumps({"source": source or {"type": "postgres", "url": PG_URL}, "exports": [body]}))
    return config

"""What every part of the state store shares: its one connection, transactions and row helpers."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rivet.state.keys import ExportKey

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RecordT = TypeVar("RecordT", bound="DataclassInstance")


class Records:
    """The state store's connection: one per process, shared by a run's threads one statement at a time.

    Each aggregate (identities, runs, chunks, cursors, leases, boundaries) is a subclass that adds
    its own methods; :class:`rivet.state.store.StateStore` is all of them.
    """

    _db: Any
    _lock: threading.RLock
    _depth: int
    where: str

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            db = self._db
            if self._depth:
                # Inside transaction(): part of the enclosing commit.
                yield db
                return
            try:
                db.begin()
                yield db
                db.commit()
            except BaseException:
                db.rollback()  # only when one is open: an interrupt may land just after BEGIN or COMMIT
                raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every state write inside the block one atomic commit (other threads wait)."""
        with self._transaction():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def _select(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# The condition that selects one export's rows.
KEY = "namespace = ? AND export_name = ?"


def _args(key: ExportKey) -> tuple[str, str]:
    return (key.namespace, key.name)


def _record(cls: type[RecordT], row: Mapping[str, Any]) -> RecordT:
    """A ``cls`` of :mod:`rivet.state.rows` from a selected row: each field from its column, other columns ignored."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


def _json_or_none(text: str | None) -> Any:
    """Stored JSON, or None when it is absent or not JSON (callers then refuse what needs it)."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _any_key(keys: Iterable[ExportKey] | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause selecting the rows of any of ``keys`` (every row for None)."""
    if keys is None:
        return "", ()
    chosen = list(keys)
    if not chosen:
        return " WHERE 1 = 0", ()
    return " WHERE " + " OR ".join(f"({KEY})" for _ in chosen), tuple(a for k in chosen for a in _args(k))

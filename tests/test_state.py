"""The state store records runs and committed files, and migrates its schema by version."""

from __future__ import annotations

import sqlite3

import pytest

from rivet.errors import StateError
from rivet.state import MIGRATIONS, StateStore
from rivet.state.keys import ExportKey
from tests.test_cli import rivet_cli, sqlite_config  # noqa: F401 - the fixture


def test_runs_and_files_are_recorded(sqlite_config):  # noqa: F811
    assert rivet_cli("run", "-c", str(sqlite_config), "-p", "LIMIT=3").returncode == 0
    store = StateStore(sqlite_config.parent / ".rivet_state.db")
    try:
        runs = {r["export_name"]: r for r in store.runs()}
        assert runs["items"]["status"] == "success" and runs["items"]["rows"] == 100
        assert runs["items_csv"]["rows"] == 3 and runs["items_csv"]["files"] == 1
        files = store.files(_key(store, "items"))
        assert len(files) == 1 and files[0]["rows"] == 100 and len(files[0]["sha256"]) == 64
        assert files[0]["url"].endswith(".parquet")
    finally:
        store.close()


def test_failed_runs_are_recorded_with_their_error(sqlite_config):  # noqa: F811
    sqlite_config.write_text(sqlite_config.read_text().replace("table: items\n", "table: nope\n", 1))
    assert rivet_cli("run", "-c", str(sqlite_config), "-e", "items", "-p", "LIMIT=3").returncode == 1
    store = StateStore(sqlite_config.parent / ".rivet_state.db")
    try:
        (run,) = store.runs([_key(store, "items")])
        assert run["status"] == "failed" and "no such table" in run["error"]
        assert store.files(_key(store, "items")) == []
    finally:
        store.close()


def _key(store: StateStore, name: str) -> ExportKey:
    (namespace,) = store.namespaces_of(name)
    return ExportKey(namespace, name)


def test_schema_version_and_refusal_of_newer_files(tmp_path):
    store = StateStore(tmp_path / "s.db")
    assert store.version == len(MIGRATIONS)
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this rivet understands"):
        StateStore(tmp_path / "s.db")


@pytest.mark.parametrize("after", ["begin", "commit"])
def test_an_interrupt_just_after_begin_or_commit_stays_an_interrupt(tmp_path, after):
    """Ctrl-C or SIGTERM between the statement and the return: the store neither errs nor holds a transaction."""
    store = StateStore(tmp_path / "s.db")
    key = ExportKey("", "e")
    db = store._db
    done = getattr(db, after)

    def then_interrupted() -> None:
        done()
        raise KeyboardInterrupt

    setattr(db, after, then_interrupted)
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.set_cursor(key, "7", "7", "r1", "2026-01-01T00:00:00.000Z")
    setattr(db, after, done)
    assert not db.in_transaction()
    # Committed when the interrupt came after COMMIT; rolled back when it came after BEGIN.
    cursor = store.cursor(key)
    assert (cursor.value if cursor else None) == ("7" if after == "commit" else None)
    store.close()

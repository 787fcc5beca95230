"""Chunked reads on every database that has them: each row exactly once, whatever the key or strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rivet
from tests.chunkrun import kill_after_chunks, resume_and_check, rows_in_files, slow_chunked_export
from tests.outputs import run_rivet, write_config
from tests.sources import Source

pytestmark = pytest.mark.usefixtures("chunks")


@pytest.fixture
def chunks(source: Source) -> None:
    """The databases without chunked reads are skipped."""
    source.require("reads_in_chunks")


def export(source: Source, table: str, out: Path, **options) -> rivet.ExportResult:
    options.setdefault("tuning", {"retry_backoff_ms": 10})
    return rivet.export(source.url, table=table, destination=str(out), mode="chunked", **options)


def test_integer_key_every_row_exactly_once(source, out):
    t = source.numbered_table(20000)
    result = export(source, t, out, chunk_column="id", chunk_size=3000, parallel=2)
    assert rows_in_files(result.files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {t}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["row_count"] == 20000 and (out / "_SUCCESS").exists()
    # Planned from the server's estimates: PostgreSQL's histogram, or MySQL's index dives
    # (balanced within a quarter of the target).
    if source.kind == "mysql":
        assert len(result.chunks) >= 6 and max(c.rows for c in result.chunks) <= 3750
    else:
        assert len(result.chunks) >= 7
    # Each worker wrote its chunks into one part; the manifest says which chunks each part holds.
    assert 1 <= len(result.files) <= 2
    held = [c for part in manifest["parts"] for c in part["chunks"]]
    assert sorted(held) == [c.index for c in result.chunks]
    rows_of = {c.index: c.rows for c in result.chunks}
    assert all(part["rows"] == sum(rows_of[c] for c in part["chunks"]) for part in manifest["parts"])


@pytest.mark.parametrize(
    "options", [{"chunk_count": 4}, {"chunk_dense": True, "chunk_size": 1500}], ids=["count", "dense"]
)
def test_other_strategies_cover_every_row(source, out, options):
    skewed = source.skewed_table()
    result = export(source, skewed, out, chunk_column="k", parallel=2, **options)
    assert rows_in_files(result.files, ["k", "payload"]) == source.rows(f"SELECT k, payload FROM {skewed}")


@pytest.mark.parametrize("key", ["date", "timestamp", "zoned"])
def test_date_and_time_keys_by_days(source, out, key):
    t = source.timed_table(key)
    result = export(source, t, out, chunk_column="at", chunk_by_days=7, parallel=2)
    assert rows_in_files(result.files, ["id"]) == source.rows(f"SELECT id FROM {t}")
    assert len(result.chunks) >= 3


def test_sigkill_then_resume_reads_only_unfinished_chunks(source, tmp_path):
    t = source.numbered_table(12000)
    config = write_config(tmp_path, source.block, slow_chunked_export(t, source.slowly("id")))
    before = kill_after_chunks(config, 6)
    assert 6 <= len(before) < 24
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    # A plain run refuses while a checkpointed run is unfinished, and says how to go on, in commands to paste.
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode == 2
    assert f"`rivet run --resume -c {config} -e slow`" in refused.stderr, refused.stderr
    assert f"`rivet state reset-chunks -c {config} -e slow`" in refused.stderr, refused.stderr

    files = resume_and_check(config, before)
    assert rows_in_files(files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {t}")

"""Destinations through fsspec: local paths, file://, memory:// and s3:// (a local moto server)."""

from __future__ import annotations

import json

import fsspec
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import QueryError
from rivet.output.validate import validate_destination
from rivet.storage.destinations import Destination, DestinationSpec
from tests.conftest import pg_url, s3_destination

pytestmark = pytest.mark.postgres

QUERY = "SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 5000) AS i"


def _s3fs(endpoint: str) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=endpoint)


def test_s3_destination_commits_parts_manifest_and_success(s3_bucket: str, s3_endpoint: str) -> None:
    result = rivet.export(
        pg_url(),
        query=QUERY,
        destination=s3_destination(s3_bucket, s3_endpoint, "exports/{export}"),
        name="nums",
        max_file_size="64KB",
    )
    fs = _s3fs(s3_endpoint)
    listing = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3_bucket}/exports/nums"))
    assert "_SUCCESS" in listing and "manifest.json" in listing
    parts = [p for p in listing if p.endswith(".parquet")]
    assert len(parts) == len(result.files) > 1
    manifest = json.loads(fs.cat(f"{s3_bucket}/exports/nums/manifest.json"))
    assert manifest["row_count"] == 5000 and [p["name"] for p in manifest["parts"]] == sorted(parts)
    ids = []
    for url in result.files:
        assert url.startswith(f"s3://{s3_bucket}/exports/nums/")
        with fs.open(url) as f:
            ids += pq.read_table(f).column("id").to_pylist()
    assert sorted(ids) == list(range(1, 5001))


def test_failed_export_leaves_nothing_in_the_bucket(s3_bucket: str, s3_endpoint: str) -> None:
    query = "SELECT i, md5(i::text) AS h, 1 / (i - 4000) AS x FROM generate_series(1, 5000) AS i"
    with pytest.raises(QueryError):
        rivet.export(
            pg_url(),
            query=query,
            destination=s3_destination(s3_bucket, s3_endpoint, "bad"),
            name="bad",
            max_file_size="16KB",
            tuning={"batch_size": 500},
        )
    assert _s3fs(s3_endpoint).glob(f"{s3_bucket}/bad/**") == []


def test_file_url_destination(tmp_path) -> None:
    result = rivet.export(pg_url(), query=QUERY, destination=f"file://{tmp_path}/x", name="nums")
    assert result.files[0].startswith(str(tmp_path / "x"))
    assert pq.read_table(result.files[0]).num_rows == 5000
    assert (tmp_path / "x" / "_SUCCESS").read_text().startswith("sha256:")


def test_memory_destination() -> None:
    result = rivet.export(pg_url(), query=QUERY, destination="memory://rivet-test/nums", name="nums", format="csv")
    fs = fsspec.filesystem("memory")
    assert result.files[0].startswith("memory://")
    assert fs.cat(result.files[0]).decode().count("\n") == 5001
    assert fs.exists("/rivet-test/nums/_SUCCESS")


def test_success_marker_vouches_for_the_manifest(tmp_path) -> None:
    import hashlib

    rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="nums")
    manifest = (tmp_path / "manifest.json").read_bytes()
    assert (tmp_path / "_SUCCESS").read_text().strip() == "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_a_run_that_fails_mid_stream_leaves_the_previous_output_complete(tmp_path) -> None:
    rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="nums")
    before = sorted(p.name for p in tmp_path.iterdir())
    failing = "SELECT i, 1 / (i - 4000) AS x FROM generate_series(1, 5000) AS i"
    with pytest.raises(QueryError):
        rivet.export(pg_url(), query=failing, destination=str(tmp_path), name="nums", tuning={"batch_size": 100})
    # Nothing of the failed run became visible, so the old _SUCCESS still vouches for the old manifest.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    problems, totals = validate_destination(Destination(DestinationSpec(str(tmp_path))), "nums")
    assert problems == [] and totals["rows"] > 0


def test_a_run_that_fails_before_reading_leaves_the_previous_output_alone(tmp_path) -> None:
    rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="nums")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(QueryError):
        rivet.export(pg_url(), query="SELECT * FROM no_such_table", destination=str(tmp_path), name="nums")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_state_file_is_private_and_outputs_follow_the_umask(tmp_path) -> None:
    import os
    import stat

    previous = os.umask(0o027)
    try:
        rivet.export(pg_url(), query=QUERY, destination=str(tmp_path / "out"), name="p", state_dir=str(tmp_path))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / ".rivet_state.db").stat().st_mode) == 0o600
    for path in (tmp_path / "out").iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_partitioned_output_on_s3_replaces_the_parts_of_the_run_before(s3_bucket: str, s3_endpoint: str) -> None:
    destination = s3_destination(s3_bucket, s3_endpoint, "lake/{export}/{partition}/")
    query = "SELECT i AS id, (ARRAY['a', 'b/c', NULL])[1 + i % 3] AS kind FROM generate_series(1, {n}) AS i"
    for n in (300, 200):  # the second run has fewer rows: every part of the first must be gone
        result = rivet.export(
            pg_url(), query=query.format(n=n), destination=destination, name="kinds", partition_by="kind"
        )
    fs = _s3fs(s3_endpoint)
    root = f"{s3_bucket}/lake/kinds"
    files = sorted(p.removeprefix(root + "/") for p in fs.find(root) if p.endswith(".parquet"))
    manifest = json.loads(fs.cat(f"{root}/manifest.json"))
    assert files == sorted(p["name"] for p in manifest["parts"]) and len(files) == 3
    assert {f.split("/")[0] for f in files} == {"kind=a", "kind=b%2Fc", "kind=__HIVE_DEFAULT_PARTITION__"}
    ids = []
    for url in result.files:
        with fs.open(url) as f:
            ids += pq.read_table(f).column("id").to_pylist()
    assert sorted(ids) == list(range(1, 201))
    problems, totals = validate_destination(
        Destination(
            DestinationSpec(f"s3://{root}", {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint})
        ),
        "kinds",
    )
    assert problems == [] and totals["rows"] == 200

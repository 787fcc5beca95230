"""Azure Blob (azurite, started here from npm) and Google Cloud Storage (gcp-storage-emulator, from PyPI):
the same publish, manifest and _SUCCESS contract as S3, read back through fsspec."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import QueryError
from rivet.output.validate import validate_destination
from rivet.storage.destinations import Destination, DestinationSpec
from tests.conftest import pg_url

pytestmark = pytest.mark.postgres

QUERY = "SELECT i AS id, md5(i::text) AS h FROM generate_series(1, {n}) AS i"


def _fs(settings: dict[str, Any]) -> fsspec.AbstractFileSystem:
    """A filesystem of its own (not fsspec's cached instance), with nothing listed yet."""
    if settings["type"] == "gcs":
        return fsspec.filesystem("gs", token="anon", endpoint_url=settings["endpoint"], skip_instance_cache=True)
    return fsspec.filesystem("abfs", **settings["storage_options"], skip_instance_cache=True)


def _scheme(settings: dict[str, Any]) -> str:
    return "gs" if settings["type"] == "gcs" else "abfs"


def _root(settings: dict[str, Any], prefix: str) -> str:
    return f"{settings.get('bucket') or settings['container']}/{prefix}"


@pytest.fixture(params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(request.param)


def test_parts_manifest_and_success_are_published(cloud):
    prefix = f"exports/{os.urandom(4).hex()}"
    result = rivet.export(
        pg_url(), query=QUERY.format(n=5000), destination={**cloud, "prefix": prefix}, name="nums", max_file_size="64KB"
    )
    fs = _fs(cloud)
    root = _root(cloud, prefix)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(root))
    assert "_SUCCESS" in names and "manifest.json" in names
    manifest_bytes = fs.cat(f"{root}/manifest.json")
    manifest = json.loads(manifest_bytes)
    parts = [n for n in names if n.endswith(".parquet")]
    assert len(parts) > 1 and [p["name"] for p in manifest["parts"]] == sorted(parts) and manifest["row_count"] == 5000
    assert fs.cat(f"{root}/_SUCCESS").decode() == f"sha256:{hashlib.sha256(manifest_bytes).hexdigest()}\n"
    ids = []
    for part in manifest["parts"]:
        with fs.open(f"{root}/{part['name']}") as f:
            table = pq.read_table(f)
        assert table.num_rows == part["rows"]
        ids += table.column("id").to_pylist()
    assert sorted(ids) == list(range(1, 5001))
    assert sorted(result.files) == sorted(f"{_scheme(cloud)}://{root}/{p}" for p in parts)


def test_a_failed_export_leaves_nothing_and_a_rerun_replaces_the_parts(cloud):
    prefix = f"again/{os.urandom(4).hex()}"
    destination = {**cloud, "prefix": prefix}
    rivet.export(pg_url(), query=QUERY.format(n=3000), destination=destination, name="n", max_file_size="32KB")
    root = _root(cloud, prefix)
    before = sorted(_fs(cloud).ls(root))
    failing = "SELECT i, md5(i::text) AS h, 1 / (i - 2500) AS x FROM generate_series(1, 3000) AS i"
    with pytest.raises(QueryError):
        rivet.export(pg_url(), query=failing, destination=destination, name="n", tuning={"batch_size": 500})
    assert sorted(_fs(cloud).ls(root)) == before  # the last good output is untouched
    rivet.export(pg_url(), query=QUERY.format(n=1000), destination=destination, name="n")
    fs = _fs(cloud)
    manifest = json.loads(fs.cat(f"{root}/manifest.json"))
    assert manifest["row_count"] == 1000
    assert sorted(n.rsplit("/", 1)[1] for n in fs.ls(root) if n.endswith(".parquet")) == [
        p["name"] for p in manifest["parts"]
    ]
    options = (
        {"token": "anon", "endpoint_url": cloud["endpoint"]} if cloud["type"] == "gcs" else cloud["storage_options"]
    )
    problems, totals = validate_destination(Destination(DestinationSpec(f"{_scheme(cloud)}://{root}", options)), "n")
    assert problems == [] and totals["rows"] == 1000

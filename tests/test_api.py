"""The notebook API: rivet.export() and rivet.run()."""

from __future__ import annotations

import textwrap

import pyarrow as pa
import pytest

import rivet
from rivet.errors import ConfigError
from tests.conftest import pg_url

pytestmark = pytest.mark.postgres


def test_export_result_is_readable(tmp_path):
    result = rivet.export(pg_url(), query="SELECT 1::int AS x", destination=str(tmp_path), name="one")
    assert result.ok and result.rows == 1 and result.bytes > 0 and result.duration_s > 0
    # The written schema, with the source's own type name for each column.
    assert result.schema.equals(
        pa.schema([pa.field("x", pa.int32(), metadata={"rivet.source_type": "integer"})]), check_metadata=True
    )
    assert "one: 1 rows, 1 file" in repr(result)
    assert "<table>" in result._repr_html_()
    assert result.manifest.endswith("manifest.json")


def test_structured_source_and_state_dir(tmp_path):
    source = {
        "type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "database": "test",
        "tls": {"mode": "disable"},
    }
    result = rivet.export(source, query="SELECT 2 AS y", destination=str(tmp_path / "o"), state_dir=str(tmp_path))
    assert result.rows == 1
    assert (tmp_path / ".rivet_state.db").exists()


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="specify exactly one of query, query_file, table or tables"):
        rivet.export(pg_url(), destination=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown key 'compresion'"):
        rivet.export(pg_url(), query="SELECT 1", destination=str(tmp_path), compresion="zstd")
    with pytest.raises(ConfigError, match="cannot tell what 'nonsense' is"):
        rivet.export("nonsense", query="SELECT 1", destination=str(tmp_path))


def test_run_returns_every_result_without_raising(tmp_path):
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - {{name: good, query: "SELECT 1 AS a", destination: out/good}}
              - {{name: bad, query: "SELECT * FROM missing_table_x", destination: out/bad}}
            """
        )
    )
    result = rivet.run(config)
    assert not result.ok and result.exit_code == 1
    assert result["good"].ok and result["bad"].status == "failed"
    assert result["bad"].error_type == "QueryError"
    assert result.to_dict()["total_rows"] == 1

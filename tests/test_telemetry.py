"""``telemetry:`` and the ``OTEL_EXPORTER_OTLP_*`` variables: spans for each run, export and chunk, and the
exports' metrics, received over OTLP/HTTP by a collector made here that decodes the protobuf requests
with ``opentelemetry-proto`` (as a real collector would), then checked against the written files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from rivet.core.events import problems
from tests.conftest import free_port, pg_url
from tests.otlp import Collector, otlp_collector
from tests.outputs import run_rivet, write_config
from tests.sources import Source

SECRET = "otlp-token-4b1d"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as received:
        yield received


def telemetry(collector: Collector, **more: Any) -> str:
    lines = [f"  otlp_endpoint: {collector.url}", f"  headers: {{x-api-key: {SECRET}}}"]
    lines += [f"  {k}: {v}" for k, v in more.items()]
    return "telemetry:\n" + "\n".join(lines) + "\n"


def parquet_rows(directory: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.rglob("*.parquet"))


def test_a_chunked_run_sends_a_span_per_export_and_chunk_and_the_metrics(database_server: Source, collector, tmp_path):
    table = database_server.numbered_table(2500)
    out = tmp_path / "out"
    export = {
        "name": "numbers",
        "table": table,
        "mode": "chunked",
        "chunk_column": "id",
        "chunk_size": 300,
        "parallel": 2,
        "destination": str(out),
    }
    rivet_yaml = write_config(tmp_path, database_server.block, [export], extra=telemetry(collector))
    ran = run_rivet("run", "-c", str(rivet_yaml), "--events")
    assert ran.returncode == 0, ran.stderr
    assert parquet_rows(out) == 2500

    # The chunk events of the stream: valid, one per chunk, their rows those written.
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    chunks = [e for e in events if e["type"] == "chunk"]
    assert all(not problems(e) for e in events)
    (planned,) = [e["total_chunks"] for e in events if e["type"] == "progress_init"]
    assert sorted(e["chunk"] for e in chunks) == list(range(planned)) and planned > 4
    assert sum(e["rows"] for e in chunks) == 2500

    spans = collector.spans()
    (run,) = [s for s in spans if s.name == "rivet run"]
    (exported,) = [s for s in spans if s.name == "export numbers"]
    read = [s for s in spans if s.name == "chunk"]
    assert run.parent == "" and run.service == "rivet"
    assert exported.parent == run.span_id and exported.trace_id == run.trace_id
    assert {s.parent for s in read} == {exported.span_id} and {s.trace_id for s in read} == {run.trace_id}
    assert sorted(s.attributes["rivet.chunk"] for s in read) == sorted(e["chunk"] for e in chunks)
    assert sum(s.attributes["rivet.rows"] for s in read) == 2500
    assert all(exported.start <= s.start <= s.end <= exported.end <= run.end for s in read)
    assert exported.attributes["rivet.rows"] == 2500 and exported.attributes["rivet.status"] == "success"
    assert exported.attributes["rivet.files"] >= 1 and exported.attributes["rivet.bytes"] > 0
    assert {k: exported.attributes[k] for k in ("rivet.export", "rivet.mode", "rivet.source", "rivet.destination")} == {
        "rivet.export": "numbers",
        "rivet.mode": "chunked",
        "rivet.source": database_server.kind,
        "rivet.destination": "file",
    }
    assert exported.status != 2 and run.status != 2  # not STATUS_CODE_ERROR

    labels = (
        ("destination", "file"),
        ("export", "numbers"),
        ("mode", "chunked"),
        ("source", database_server.kind),
    )
    metrics = collector.metrics()
    assert metrics[("rivet_export_rows_total", labels)] == (2500, "sum", "")
    assert metrics[("rivet_export_last_run_success", labels)] == (1, "gauge", "")
    assert metrics[("rivet_export_last_run_duration_seconds", labels)][2] == "s"
    assert metrics[("rivet_export_bytes_total", labels)][2] == "By"
    # The source's read time: each chunk's read, summed, and the longest of them (the spans' lengths).
    longest = max(s.end - s.start for s in read) / 1e9
    assert metrics[("rivet_export_last_run_longest_read_seconds", labels)][0] == pytest.approx(longest, abs=1e-5)
    total = metrics[("rivet_export_last_run_read_seconds", labels)][0]
    assert total == pytest.approx(sum(s.end - s.start for s in read) / 1e9, abs=1e-4) and total > longest
    assert len(collector.bodies("/v1/metrics")) == 1
    # The configured header reaches the collector; no secret and no path is in what it receives.
    assert all(headers.get("x-api-key") == SECRET for _, headers, _ in collector.requests)
    assert all(SECRET.encode() not in body and str(tmp_path).encode() not in body for *_, body in collector.requests)


@pytest.mark.postgres
def test_fanned_out_exports_trace_under_the_parents_run_and_the_metrics_are_sent_once(
    pg, pg_table, collector, tmp_path
):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 500) g")
    exports = [{"name": f"copy{i}", "table": table, "destination": str(tmp_path / f"out{i}")} for i in range(2)]
    source = {"type": "postgres", "url": pg_url().replace("postgres@", "postgres:pw-never-sent@")}
    rivet_yaml = write_config(tmp_path, source, exports, extra=telemetry(collector))
    ran = run_rivet("run", "-c", str(rivet_yaml), "--parallel-export-processes")
    assert ran.returncode == 0, ran.stderr
    spans = collector.spans()
    runs = [s for s in spans if s.name == "rivet run"]
    parent = next(s for s in runs if s.parent == "")
    children = [s for s in runs if s.parent == parent.span_id]
    assert len(runs) == 3 and len(children) == 2  # the parent's run, and one in each child under it
    for name in ("export copy0", "export copy1"):
        (exported,) = [s for s in spans if s.name == name]
        assert exported.parent in {c.span_id for c in children} and exported.trace_id == parent.trace_id
        assert exported.attributes["rivet.rows"] == 500
    # Metrics come from the parent alone, for both exports.
    assert len(collector.bodies("/v1/metrics")) == 1
    rows = {
        dict(labels)["export"]: v[0] for (name, labels), v in collector.metrics().items() if name.endswith("rows_total")
    }
    assert rows == {"copy0": 500, "copy1": 500}
    assert all(b"pw-never-sent" not in body for *_, body in collector.requests)


@pytest.mark.postgres
def test_the_standard_variables_alone_turn_it_on_under_an_orchestrators_trace(pg, pg_table, collector, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 10) g")
    rivet_yaml = write_config(
        tmp_path,
        {"type": "postgres", "url": pg_url()},
        [{"name": "t", "table": table, "destination": str(tmp_path / "o")}],
    )
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "TRACEPARENT": f"00-{trace_id}-{span_id}-01"}
    ran = run_rivet("run", "-c", str(rivet_yaml), env=env)
    assert ran.returncode == 0, ran.stderr
    (run,) = [s for s in collector.spans() if s.name == "rivet run"]
    assert (run.trace_id, run.parent) == (trace_id, span_id)
    assert {p for p, _, _ in collector.requests} == {"/v1/traces", "/v1/metrics"}


@pytest.mark.postgres
def test_a_failed_export_ends_its_span_in_error_and_the_run_says_so(pg, collector, tmp_path):
    rivet_yaml = write_config(
        tmp_path,
        {"type": "postgres", "url": pg_url()},
        [{"name": "broken", "query": "SELECT * FROM no_such_table_here", "destination": str(tmp_path / "o")}],
        extra=telemetry(collector),
    )
    ran = run_rivet("run", "-c", str(rivet_yaml))
    assert ran.returncode == 1
    spans = {s.name: s for s in collector.spans()}
    assert spans["export broken"].status == 2 and spans["export broken"].attributes["rivet.status"] == "failed"
    assert spans["rivet run"].status == 2 and spans["rivet run"].attributes["rivet.exit_code"] == 1


@pytest.mark.postgres
def test_a_collector_that_is_down_costs_a_warning_not_the_run(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 10) g")
    closed = f"http://127.0.0.1:{free_port()}"
    rivet_yaml = write_config(
        tmp_path,
        {"type": "postgres", "url": pg_url()},
        [{"name": "t", "table": table, "destination": str(tmp_path / "o")}],
        extra=f"telemetry: {{otlp_endpoint: {closed}, timeout_s: 1}}\n",
    )
    ran = run_rivet("run", "-c", str(rivet_yaml))
    assert ran.returncode == 0, ran.stderr
    assert parquet_rows(tmp_path / "o") == 10
    assert f"telemetry: sending the run's metrics to {closed} failed" in ran.stderr


@pytest.mark.postgres
def test_a_silent_collector_delays_the_end_of_the_run_by_its_timeout_not_more(pg, pg_table, silent_server, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 3000) g")
    export = {"name": "t", "table": table, "mode": "chunked", "chunk_column": "id", "chunk_size": 100,
              "parallel": 2, "destination": str(tmp_path / "o")}  # fmt: skip
    extra = f"telemetry: {{otlp_endpoint: {silent_server}, timeout_s: 1}}\n"
    rivet_yaml = write_config(tmp_path, {"type": "postgres", "url": pg_url()}, [export], extra=extra)
    ran = run_rivet("run", "-c", str(rivet_yaml), "--json", timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["exports"][0]["rows"] == 3000 == parquet_rows(tmp_path / "o")
    assert "telemetry: sending the run's spans" in ran.stderr and "did not take them" in ran.stderr


@pytest.mark.postgres
def test_sdk_settings_it_refuses_cost_the_telemetry_not_the_run(pg, pg_table, collector, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 10) g")
    export = {"name": "t", "table": table, "destination": str(tmp_path / "o")}
    rivet_yaml = write_config(tmp_path, {"type": "postgres", "url": pg_url()}, [export], extra=telemetry(collector))
    env = {"OTEL_BSP_MAX_QUEUE_SIZE": "1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5"}
    ran = run_rivet("run", "-c", str(rivet_yaml), env=env)
    assert ran.returncode == 0, ran.stderr
    assert parquet_rows(tmp_path / "o") == 10
    assert "the OpenTelemetry SDK could not start" in ran.stderr and not collector.requests


@pytest.mark.postgres
def test_the_configured_headers_go_where_the_variables_point(pg, pg_table, collector, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 10) g")
    export = {"name": "t", "table": table, "destination": str(tmp_path / "o")}
    extra = f"telemetry: {{headers: {{x-api-key: {SECRET}}}, service_name: warehouse-extracts}}\n"
    rivet_yaml = write_config(tmp_path, {"type": "postgres", "url": pg_url()}, [export], extra=extra)
    ran = run_rivet("run", "-c", str(rivet_yaml), env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert ran.returncode == 0, ran.stderr
    assert {p for p, _, _ in collector.requests} == {"/v1/traces", "/v1/metrics"}
    assert all(headers.get("x-api-key") == SECRET for _, headers, _ in collector.requests)
    assert {s.service for s in collector.spans()} == {"warehouse-extracts"}


@pytest.mark.parametrize(
    ("extra", "env", "said"),
    [
        (
            "telemetry: {otlp_endpoint: 'grpc://collector:4317'}\n",
            {},
            "otlp_endpoint must be an http:// or https:// URL",
        ),
        ("telemetry: {otlp_endpoint: 'http://c:4318', header: {a: b}}\n", {}, "header"),
        ("telemetry: {service_name: x}\n", {}, "telemetry: needs otlp_endpoint"),
        (
            "telemetry: {service_name: x}\n",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "rivet sends OTLP over HTTP (http/protobuf), not grpc",
        ),
    ],
)
def test_a_telemetry_block_it_cannot_follow_is_refused_by_name_before_reading(tmp_path, extra, env, said):
    rivet_yaml = write_config(
        tmp_path,
        {"type": "sqlite", "path": str(tmp_path / "s.db")},
        [{"name": "t", "query": "SELECT 1 AS x", "destination": str(tmp_path / "o")}],
        extra=extra,
    )
    ran = run_rivet("run", "-c", str(rivet_yaml), env=env)
    assert ran.returncode == 2, ran.stderr
    assert said in ran.stderr
    assert not (tmp_path / "o").exists()

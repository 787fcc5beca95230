"""rivet doctor: real servers, real privileges, real folders; every check's verdict and fix."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, PG_URL, pg_url
from tests.outputs import files_with_bytes, run_rivet, write_config


def _doctor(tmp_path: Path, source: str, exports: str, env: dict[str, str] | None = None) -> tuple[int, list[dict]]:
    config = write_config(tmp_path, source, exports)
    ran = run_rivet("doctor", "-c", str(config), "--json", env=env)
    return ran.returncode, json.loads(ran.stdout)["checks"]


def _verdicts(checks: list[dict]) -> dict[tuple[str, str], str]:
    return {(c["subject"], c["check"]): c["status"] for c in checks}


@pytest.mark.postgres
def test_a_ready_postgresql_config_passes_and_each_problem_is_named(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, updated_at timestamptz)")
    exports = (
        f"  - {{name: ok, table: {table}, mode: incremental, cursor_column: updated_at, destination: out}}\n"
        "  - {name: missing, query: SELECT * FROM no_such_table_here, destination: out}\n"
        f"  - {{name: typo, table: {table}, mode: chunked, chunk_column: idd, destination: other}}\n"
    )
    code, checks = _doctor(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', exports)
    verdicts = _verdicts(checks)
    assert code == 1
    assert verdicts[("source", "tcp")] == "ok" and verdicts[("source", "login")] == "ok"
    assert verdicts[("source", "channel")] == "warn"  # plaintext on loopback: a warning, not a failure
    assert verdicts[("export ok", "select")] == "ok" and verdicts[("export ok", "columns")] == "ok"
    assert verdicts[("export missing", "select")] == "fail"
    [typo] = [c for c in checks if c["subject"] == "export typo" and c["check"] == "columns"]
    assert typo["status"] == "fail" and "chunk_column idd is not in the result" in typo["detail"]
    assert "id, updated_at" in typo["fix"]
    assert verdicts[(f"destination {tmp_path / 'out'}", "write")] == "ok"
    assert verdicts[("state", "open")] == "ok"
    # The probes were removed: only the state file and the probes' folder remain.
    assert not [p for p in (tmp_path / "out").rglob("*.probe")]


@pytest.mark.postgres
def test_a_user_without_select_is_told_to_be_granted_it(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int)")
    role = f"rivet_doctor_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE ROLE {role} LOGIN")
    try:
        base, _, _ = PG_URL.partition("?")
        url = base.replace("postgres@", f"{role}@", 1) + "?sslmode=disable"
        code, checks = _doctor(
            tmp_path, f'{{type: postgres, url: "{url}"}}', f"  - {{name: t, table: {table}, destination: out}}\n"
        )
        [select] = [c for c in checks if c["check"] == "select"]
        assert code == 1 and select["status"] == "fail" and "permission denied" in select["detail"]
        assert select["fix"] == "grant the user SELECT on the tables of the query"
    finally:
        pg.execute(f"DROP ROLE {role}")


def test_a_port_that_does_not_answer_stops_at_tcp(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    code, checks = _doctor(
        tmp_path,
        f'{{type: postgres, url: "postgresql://u@127.0.0.1:{port}/db"}}',
        "  - {name: t, table: t, destination: out}\n",
    )
    verdicts = _verdicts(checks)
    assert code == 1 and verdicts[("source", "dns")] == "ok" and verdicts[("source", "tcp")] == "fail"
    assert ("source", "login") not in verdicts


@pytest.mark.mysql
def test_mariadb_destinations_and_credentials(my_table, tmp_path):
    table = my_table("CREATE TABLE {t} (id int)")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    exports = (
        f"  - {{name: ok, table: {table}, destination: out}}\n"
        f"  - {{name: blocked, table: {table}, destination: {blocked}/out}}\n"
        f"  - {{name: s3, table: {table}, destination: {{type: s3, bucket: b, access_key_env: RIVET_T_NOPE, "
        "secret_key_env: RIVET_T_NOPE2}}\n"
    )
    before = files_with_bytes(tmp_path)
    code, checks = _doctor(tmp_path, f'{{type: mysql, url: "{MYSQL_URL}"}}', exports)
    verdicts = _verdicts(checks)
    assert code == 1
    assert verdicts[("source", "login")] == "ok" and verdicts[("export ok", "select")] == "ok"
    assert verdicts[(f"destination {tmp_path / 'out'}", "write")] == "ok"
    assert verdicts[(f"destination {blocked}/out", "write")] == "fail"
    [s3] = [c for c in checks if c["subject"] == "export s3"]
    assert s3["status"] == "fail" and "RIVET_T_NOPE is not set" in s3["detail"]
    assert files_with_bytes(tmp_path)["a-file"] == before["a-file"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "source",
    [
        "{type: postgres, host: 127.0.0.1, port: 5432, user: postgres, database: test, tls: {mode: disable}}",
        # A libpq key=value string is a host and port, not a Unix socket.
        '{type: postgres, url: "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"}',
    ],
    ids=["fields", "key-value"],
)
def test_doctor_checks_the_address_the_run_connects_to(tmp_path, source):
    code, checks = _doctor(tmp_path, source, "  - {name: t, query: SELECT 1 AS x, destination: out}\n")
    [tcp] = [c for c in checks if (c["subject"], c["check"]) == ("source", "tcp")]
    assert (tcp["status"], tcp["detail"]) == ("ok", "127.0.0.1:5432 answers"), checks
    assert _verdicts(checks)[("source", "login")] == "ok"
    assert code == 0, checks

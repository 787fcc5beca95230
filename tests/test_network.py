"""Networks that go silent, and interrupted reads that must stop on the server too."""

from __future__ import annotations

import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import rivet
from rivet.errors import ConfigError, SourceConnectionError
from tests.conftest import MYSQL_URL, PG_URL, free_port, my_query, pg_url
from tests.outputs import rows_by_glob, rows_by_manifest, run_export_json, start_rivet


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class StallingProxy:
    """Forwards TCP to a server; the first connection to get past ``stall_after`` bytes goes silent."""

    def __init__(self, target: tuple[str, int], stall_after: int) -> None:
        self.target = target
        self.stall_after = stall_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.stalled = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(self.target)
            self._open += [client, server]
            # Short connections (an EXPLAIN for the progress estimate) never reach the limit.
            limit = self.stall_after if not self.stalled.is_set() else None
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, limit), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                dst.close()
                return
            if limit is not None and sent + len(data) > limit:
                # Silence: keep both sockets open, forward nothing more, answer nothing.
                self.stalled.set()
                return
            sent += len(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for s in self._open:
            s.close()


@pytest.mark.postgres
def test_a_network_that_goes_silent_mid_stream_is_retried_to_an_exact_result(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 60000) AS i")
    target = urlsplit(PG_URL)
    proxy = StallingProxy((target.hostname or "127.0.0.1", target.port or 5432), stall_after=300_000)
    try:
        url = pg_url().replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}", 1)
        config = tmp_path / "rivet.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                source:
                  type: postgres
                  url: "{url}"
                  read_timeout_s: 2
                exports:
                  - name: s
                    table: {t}
                    destination: out
                    tuning: {{batch_size: 2000, retry_backoff_ms: 10}}
                """
            )
        )
        result = run_export_json(config)
        assert proxy.stalled.is_set(), "the proxy never went silent"
        assert result["code"] == 0, result["stderr"]
        assert "sent nothing for 2 s" in result["stderr"] and "retrying" in result["stderr"]
        expected = {(i,): 1 for i in range(1, 60001)}
        assert rows_by_manifest(tmp_path / "out", ["id"]) == expected
        assert rows_by_glob(tmp_path / "out", "s", ["id"]) == expected
    finally:
        proxy.close()


def _interrupt_a_run(tmp_path: Path, kind: str, url: str, query: str, running) -> subprocess.CompletedProcess[str]:
    """Start ``rivet run``, wait until its statement runs on the server, SIGINT it; its outcome."""
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source:\n  type: {kind}\n  url: "{url}"\nexports:\n  - name: c\n    query: "{query}"\n    destination: out\n'
    )
    proc = start_rivet("run", "-c", str(config), "--json")
    try:
        wait_for(running, "the statement to run on the server")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.postgres
def test_ctrl_c_stops_the_statement_on_the_postgres_server(pg, tmp_path):
    app = f"rivet_cancel_{uuid.uuid4().hex[:8]}"

    def active() -> int:
        return pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (app,)
        ).fetchone()[0]

    done = _interrupt_a_run(
        tmp_path,
        "postgres",
        f"{pg_url()}&application_name={app}",
        "SELECT 1 AS x FROM pg_sleep(600)",
        lambda: active() > 0,
    )
    assert done.returncode == 130, done.stderr
    # Without a cancel request the backend would sleep on for ten minutes.
    wait_for(lambda: active() == 0, "the server to stop the statement", timeout=30)


@pytest.mark.mysql
def test_ctrl_c_stops_the_statement_on_the_mysql_server(my_conn, tmp_path):
    marker = f"rivet_cancel_{uuid.uuid4().hex[:8]}"

    def running() -> int:
        rows = my_query(
            my_conn,
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
            f"'%{marker}%' AND INFO NOT LIKE '%PROCESSLIST%'",
        )
        return int(rows[0][0])

    def kills() -> int:
        return int(my_query(my_conn, "SHOW GLOBAL STATUS LIKE 'Com_kill'")[0][1])

    before = kills()
    done = _interrupt_a_run(
        tmp_path, "mysql", MYSQL_URL, f"SELECT SLEEP(600) AS x, '{marker}' AS m", lambda: running() > 0
    )
    assert done.returncode == 130, done.stderr
    wait_for(lambda: running() == 0, "the server to stop the statement", timeout=30)
    # MariaDB may notice a closed connection on its own; the KILL QUERY rivet sent is counted.
    assert kills() > before


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_fails_fast_and_clearly(scheme, tmp_path, caplog) -> None:
    port = free_port()
    url = f"{scheme}://u@127.0.0.1:{port}/d"
    tuning = {"max_retries": 3, "retry_backoff_ms": 10}
    with (
        caplog.at_level("WARNING", logger="rivet"),
        pytest.raises(SourceConnectionError, match=f"cannot reach 127.0.0.1:{port}"),
    ):
        rivet.export(url, query="SELECT 1", destination=str(tmp_path), tuning=tuning)
    # A wrong address is not a blip: no attempt after the first.
    assert "retrying" not in caplog.text


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_bad_url_parameter_is_a_config_error_that_echoes_nothing(scheme, tmp_path) -> None:
    with pytest.raises(ConfigError, match="has a parameter rivet does not know") as err:
        rivet.export(f"{scheme}://u@127.0.0.1/d?frobnicate=1", query="SELECT 1", destination=str(tmp_path))
    assert "frobnicate" not in str(err.value)
    # A '/' in an unencoded password misplaces the port: the error does not show the password's tail.
    with pytest.raises(ConfigError, match="port in the connection URL is not a number") as err:
        rivet.export(f"{scheme}://u:se/cret@h:5432/d", query="SELECT 1", destination=str(tmp_path))
    assert "se" not in str(err.value).replace("sets", "")

"""Notifications after a run, received by a local HTTP server: a JSON webhook and Slack's message shape."""

from __future__ import annotations

import json
import os
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rivet.app.notify import outcomes, send_notifications
from rivet.config.blocks import NotificationsConfig
from rivet.execution.results import ExportResult
from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet, write_config


class Receiver:
    """A local HTTP server that keeps every POST, answering with ``status``."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _config(tmp_path: Path, source: str, table: str, notifications: str, processes: bool = False) -> Path:
    return write_config(
        tmp_path,
        source,
        f"- {{name: good, table: {table}, destination: good}}\n"
        "- {name: bad, table: no_such_table_here, destination: bad}\n",
        extra=f"parallel_export_processes: {str(processes).lower()}\n" + textwrap.dedent(notifications),
    )


NOTIFY = """
notifications:
  webhook: {url_env: RIVET_T_HOOK, on: [failure, success]}
  slack: {webhook_url_env: RIVET_T_SLACK, on: [failure, schema_change]}
"""


@pytest.mark.postgres
@pytest.mark.parametrize("processes", [False, True], ids=["one-process", "child-processes"])
def test_each_export_notifies_what_its_outcome_asks_for_once(pg, pg_table, tmp_path, receiver, processes):
    table = pg_table("CREATE TABLE {t} (id int)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 7)")
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table, NOTIFY, processes)
    env = {"RIVET_T_HOOK": f"{receiver.url}/hook/secret-token", "RIVET_T_SLACK": f"{receiver.url}/slack/T0/B0/xyz"}
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode == 1  # the failed export decides the exit code, not the notifications
    hooks = sorted((p["export"]["name"], p["outcome"]) for path, p in receiver.posts if path.startswith("/hook/"))
    assert hooks == [("bad", ["failure"]), ("good", ["success"])]
    good = next(p for path, p in receiver.posts if path.startswith("/hook/") and p["export"]["name"] == "good")
    assert good["export"]["rows"] == 7 and good["export"]["files"] == 1 and good["source"] == "rivet"
    [slack] = [p for path, p in receiver.posts if path.startswith("/slack/")]
    assert slack["text"] == "rivet: export bad failed"
    assert slack["attachments"][0]["color"] == "#d00000" and "no_such_table_here" in slack["attachments"][0]["text"]


@pytest.mark.mysql
def test_schema_drift_notifies_on_mariadb(my_table, my_conn, tmp_path, receiver):
    table = my_table("CREATE TABLE {t} (id int)")
    with my_conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: mysql, url: "{MYSQL_URL}"}}\n'
        "notifications:\n  webhook: {url_env: RIVET_T_HOOK, on: [schema_drift]}\n"
        f"exports:\n  - {{name: t, table: {table}, destination: out}}\n"
    )
    env = {"RIVET_T_HOOK": f"{receiver.url}/hook"}
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    assert receiver.posts == []  # the first run has nothing to drift from
    with my_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} ADD COLUMN note varchar(10)")
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    [(_, post)] = receiver.posts
    assert post["outcome"] == ["schema_drift"] and post["export"]["schema_drift"]["added"] == ["note: string"]


@pytest.mark.postgres
def test_a_notification_that_fails_is_a_warning_that_hides_its_url(pg, pg_table, tmp_path, receiver):
    table = pg_table("CREATE TABLE {t} (id int)")
    receiver.status = 500
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table, NOTIFY)
    env = {"RIVET_T_HOOK": f"{receiver.url}/hook/secret-token", "RIVET_T_SLACK": "http://127.0.0.1:1/T0/secret"}
    ran = run_rivet("run", "-c", str(config), "-e", "good", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "notifications.webhook: http://127.0.0.1 answered 500" in ran.stderr
    assert "secret" not in ran.stderr
    unset = run_rivet("run", "-c", str(config), "-e", "bad", env={})
    assert unset.returncode == 1 and "environment variable RIVET_T_HOOK is not set; nothing was sent" in unset.stderr


def test_outcomes_and_config_shapes():
    def result(**fields: object) -> dict:
        return {"status": "success", "error_type": None, "schema_drift": None, "retries": 0, "warnings": 0} | fields

    assert outcomes(result()) == {"success"}
    assert outcomes(result(retries=2)) == {"success", "degraded"}
    assert outcomes(result(status="failed", error_type="QualityError")) == {"failure", "quality"}
    assert outcomes(result(status="failed", error_type="SchemaDriftError")) == {"failure", "schema_drift"}
    assert outcomes(result(schema_drift={"added": ["x"]})) == {"success", "schema_drift"}
    with pytest.raises(ValueError, match="exactly one of webhook_url or webhook_url_env"):
        NotificationsConfig.model_validate({"slack": {"on": ["failure"]}})
    settings = NotificationsConfig.model_validate({"webhook": {"url": "ftp://example.invalid/x", "on": ["success"]}})
    assert send_notifications(settings, [ExportResult(name="e", run_id="r", status="success")]) == 0


@pytest.mark.postgres
def test_what_a_crashed_child_printed_reaches_a_webhook_without_its_secrets(pg, pg_table, tmp_path, receiver):
    table = pg_table("CREATE TABLE {t} (id int)")
    # A library in the child prints a URL with a password, then the child dies without a result.
    hooks = tmp_path / "site"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import sys\nprint('retrying postgresql://app:hunter2 secret@db.internal/shop', file=sys.stderr)\n"
    )
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table, NOTIFY, processes=True)
    env = {
        "RIVET_T_HOOK": f"{receiver.url}/hook/x",
        "RIVET_T_SLACK": f"{receiver.url}/slack/x",
        "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RIVET_FAILPOINTS": "before_manifest:crash",
    }
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode == 1  # the parent's status: its child was killed at the failpoint
    sent = json.dumps(receiver.posts)
    assert "retrying postgresql://app:***@db.internal/shop" in sent  # the tail is there, told safely
    assert "hunter2" not in sent

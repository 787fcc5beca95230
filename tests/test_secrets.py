"""A canary password full of ``@ / : ? #`` never leaves: not in outputs, artifacts, events, state or errors."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

import rivet
from rivet.config import load_config
from rivet.errors import RivetError
from tests.conftest import MYSQL_URL, PG_URL, free_port
from tests.outputs import run_rivet, start_rivet

pytestmark = pytest.mark.postgres

CANARY = "C4n@ry/pw:?#x"
ENCODED = quote(CANARY, safe="")
# The old redactor kept what followed the first '@': the tail must not show either.
FRAGMENTS = (CANARY, ENCODED, "ry/pw:?#x", "ry%2Fpw")


def leaks(text: str) -> list[str]:
    return [f for f in FRAGMENTS if f in text]


def everything_under(root: Path) -> str:
    """Every file's text, and every row of every SQLite database, under ``root``."""
    texts = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.endswith(".db"):
            with sqlite3.connect(path) as conn:
                for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                    texts += [repr(row) for row in conn.execute(f'SELECT * FROM "{table}"')]
        else:
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(texts)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("RIVET_T_CANARY", CANARY)
    host_url = PG_URL.replace("postgresql://postgres@", f"postgresql://postgres:{ENCODED}@", 1)
    monkeypatch.setenv("RIVET_T_URL", f"{host_url}?sslmode=disable")
    return {"RIVET_T_CANARY": CANARY, "RIVET_T_URL": f"{host_url}?sslmode=disable"}


def write_config(tmp_path: Path, exports: str, source: str = "url_env: RIVET_T_URL") -> Path:
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f"source:\n  type: postgres\n  {source}\nexports:\n" + textwrap.indent(textwrap.dedent(exports), "  ")
    )
    return config


def test_no_command_and_no_artifact_shows_the_password(env, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2000) AS i")
    config = write_config(
        tmp_path,
        f"""\
        - name: ok
          table: {t}
          mode: chunked
          chunk_column: id
          chunk_size: 500
          chunk_checkpoint: true
          destination: out/ok
        - name: inc
          table: {t}
          mode: incremental
          cursor_column: id
          destination: out/inc
        - name: bad
          query: SELECT * FROM no_such_table_at_all
          destination: out/bad
        """,
    )
    outputs = []
    for args in (
        ("run", "-c", str(config), "--json"),
        ("run", "-c", str(config), "--json", "--parallel-export-processes"),
        ("run", "-c", str(config), "-e", "ok", "--events"),
        ("plan", "-c", str(config), "-e", "ok", "-o", str(tmp_path / "plan.json")),
        ("apply", str(tmp_path / "plan.json"), "--json"),
        ("check", "-c", str(config), "-e", "ok", "--json"),
        ("check", "-c", str(config), "-e", "ok", "--type-report"),
        ("validate", "-c", str(config), "--json"),
        ("state", "show", "-c", str(config), "--json"),
    ):
        proc = run_rivet(*args, env=env)
        outputs.append(proc.stdout + proc.stderr)
    assert "no_such_table_at_all" in "\n".join(outputs)  # the failure paths ran
    assert leaks("\n".join(outputs)) == []
    assert leaks(everything_under(tmp_path)) == []


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{ENCODED}@127.0.0.1:{{port}}/test",
        f"postgresql://postgres:{CANARY}@127.0.0.1:{{port}}/test",  # unencoded: the parser misreads it
        f"host=127.0.0.1 port={{port}} user=postgres password='{CANARY}'",
    ],
    ids=["encoded", "unencoded", "dsn"],
)
def test_connection_failures_do_not_show_the_password(tmp_path, url):
    url = url.format(port=free_port())
    with pytest.raises(RivetError) as err:
        rivet.export(url, query="SELECT 1", destination=str(tmp_path))
    shown = f"{err.value}\n{err.value!r}\n{err.value.__cause__!r}"
    assert leaks(shown) == []


STRUCTURED = f'host: 127.0.0.1\n  port: 5432\n  user: postgres\n  database: test\n  password: "{CANARY}"'


def test_reprs_of_configs_and_sources_hide_the_password(env, tmp_path):
    from rivet.plan.export import build_plan

    shown = []
    for source in ("url_env: RIVET_T_URL", f'url: "{env["RIVET_T_URL"]}"', STRUCTURED):
        config = write_config(tmp_path, "- name: a\n  query: SELECT 1\n  destination: out\n", source=source)
        loaded = load_config(config)
        plan = build_plan(loaded, loaded.config.exports[0])
        shown += [repr(x) for x in (loaded, loaded.config, loaded.config.source, plan, plan.source)]
        shown.append(str(plan.describe()))
    assert leaks("\n".join(shown)) == []


def test_parameters_never_reach_a_childs_command_line(pg, tmp_path):
    slow = "SELECT 1 AS x FROM pg_sleep(30)"
    config = write_config(
        tmp_path,
        f"- name: a\n  query: {slow}\n  destination: out/a\n- name: b\n  query: {slow}\n  destination: out/b\n",
        source=STRUCTURED.replace(CANARY, "${DBPW}") + "\n  tls: {mode: disable}",
    )
    parent = start_rivet("run", "-c", str(config), "-p", f"DBPW={CANARY}", "--parallel-export-processes", text=False)
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while len(children) < 2 and time.monotonic() < deadline:
            children = [c for c in psutil.Process(parent.pid).children() if "run" in c.cmdline()]
            time.sleep(0.05)
        assert len(children) == 2, "the children never started"
        for child in children:
            assert leaks(" ".join(child.cmdline())) == []
    finally:
        parent.terminate()
        parent.communicate(timeout=60)


@pytest.mark.mysql
def test_a_refused_mysql_login_does_not_show_the_password(tmp_path):
    url = MYSQL_URL.replace("mysql://root@", f"mysql://root:{ENCODED}@", 1)
    # Over plaintext the password's hash is not even sent; with the opt-in the server refuses it.
    with pytest.raises(RivetError, match="mysql_native_password hash over a plaintext connection") as err:
        rivet.export(url, query="SELECT 1", destination=str(tmp_path))
    assert leaks(f"{err.value}\n{err.value!r}") == []
    opted_in = {"type": "mysql", "url": url, "tls": {"mode": "disable", "allow_unverified_password": True}}
    with pytest.raises(RivetError, match="Access denied") as err:
        rivet.export(opted_in, query="SELECT 1", destination=str(tmp_path))
    assert leaks(f"{err.value}\n{err.value!r}") == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_link_swapped_in_for_a_staged_part_never_redirects_the_write(tmp_path, fmt):
    import pyarrow as pa

    from rivet.errors import DestinationError
    from rivet.output import open_part_writer, output_format
    from rivet.storage.destinations import Destination, DestinationSpec

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file")
    destination = Destination(DestinationSpec(str(tmp_path / "out")))
    destination.prepare()

    def staged_then_swapped(n: int):  # type: ignore[no-untyped-def]
        path = destination.staging_path("r", n)
        path.unlink()
        path.symlink_to(victim)  # planted by whoever can write the destination folder
        return path

    writer = open_part_writer(
        output_format(fmt, None, None, None), pa.schema([("id", pa.int64())]), staged_then_swapped, None
    )
    writer.write(pa.record_batch([pa.array(range(1000))], names=["id"]))
    (part,) = writer.close()
    assert victim.read_bytes() == b"someone else's file"  # the rows went into the file rivet created
    assert part.rows == 1000 and part.bytes > 0
    with pytest.raises(DestinationError, match="was replaced by another; it is not published"):
        destination.commit(part.path, f"part.{fmt}")
    assert victim.read_bytes() == b"someone else's file" and not (tmp_path / "out" / f"part.{fmt}").exists()

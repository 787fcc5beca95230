"""Throwaway database servers configured otherwise than the machine's own, started from the local
binaries on a free port (PostgreSQL's as the ``postgres`` user, MariaDB's as ``mysql``) and removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass(frozen=True)
class PostgresEndpoint:
    """A PostgreSQL database on 127.0.0.1 at ``port`` that trusts ``postgres``."""

    port: int
    database = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}?sslmode=disable"

    @property
    def source(self) -> dict[str, object]:
        """The ``source:`` settings that reach it."""
        return {"type": "postgres", "url": self.url}


@dataclass(frozen=True)
class PostgresCluster(PostgresEndpoint):
    """A running throwaway PostgreSQL (its socket in ``root``)."""

    root: Path


def postgres_bin() -> Path:
    """The newest local PostgreSQL server binaries; the test fails, naming what is missing, without them."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail(
            "no PostgreSQL server binaries under /usr/lib/postgresql: install postgresql (make install-servers)"
        )
    return found[-1].parent


@contextmanager
def postgres_cluster(
    *,
    initdb: tuple[str, ...] = ("-A", "trust"),
    prepare: Callable[[Path], None] | None = None,
    hba: str | None = None,
    **settings: str,
) -> Iterator[PostgresCluster]:
    """A new cluster with ``settings`` (``wal_level="logical"``, ...) given to the server at start.

    ``prepare(root)`` first puts files in the cluster's folder (a password file, certificates),
    which ``{root}`` in ``initdb`` arguments and ``settings`` names; ``hba`` replaces
    ``pg_hba.conf``.
    """
    bin_dir = postgres_bin()
    # Not under pytest's tmp: the server's own user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="rivet-pg-"))
    run_as: list[str] = []
    if prepare is not None:
        prepare(root)
    if os.geteuid() == 0:  # the server refuses to run as root
        for path in [root, *root.iterdir()]:
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    args = [a.format(root=root) for a in initdb]
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", *args],
        check=True,
        capture_output=True,
    )
    if hba is not None:
        (data / "pg_hba.conf").write_text(hba)
    options = " ".join(f"-c {k}={v.format(root=root)}" for k, v in settings.items())
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 {options}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresCluster(port, root)
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class MariadbServer:
    """A running throwaway MariaDB on 127.0.0.1 (its socket and files in ``root``); ``root`` has no password."""

    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    def sql(self, statements: str) -> None:
        """Run ``statements`` as root over the socket."""
        client = ["mariadb", "--default-character-set=utf8mb4", f"--socket={self.root / 'sock'}", "-u", "root"]
        subprocess.run([*client, "-e", statements], check=True, capture_output=True)


@contextmanager
def mariadb_server(
    *, options: tuple[str, ...] = (), prepare: Callable[[Path], None] | None = None, setup: str = ""
) -> Iterator[MariadbServer]:
    """A new MariaDB started with ``options`` (``{root}`` names its folder), after ``prepare(root)``
    put files there; ``setup`` runs as root once it answers. It has a ``test`` database."""
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not (Path(mariadbd).exists() and shutil.which("mariadb-install-db")):
        pytest.fail("needs mariadbd and mariadb-install-db to start a test server: install mariadb-server")
    root = Path(tempfile.mkdtemp(prefix="rivet-my-"))
    if prepare is not None:
        prepare(root)
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        for path in [root, *root.iterdir()]:
            shutil.chown(path, "mysql")
    data, port = root / "data", free_port()
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal", *user],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={root / 'sock'}",
            "--character-set-server=utf8mb4",
            *(o.format(root=root) for o in options),
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MariadbServer(port, root)
    try:
        ping = ["mariadb", f"--socket={root / 'sock'}", "-u", "root", "-e", "SELECT 1"]
        deadline = time.monotonic() + 120  # polls until the server answers; the deadline is only a safety net
        while subprocess.run(ping, capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the test MariaDB did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        # Anonymous accounts would match 'localhost' before the tests' users do.
        server.sql(
            "DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES; CREATE DATABASE IF NOT EXISTS test"
        )
        if setup:
            server.sql(setup)
        yield server
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Bouncer(PostgresEndpoint):
    """A running PgBouncer, serving a PostgreSQL database as ``test``."""

    pool_mode: str
    database = "test"


@contextmanager
def pgbouncer(pool_mode: str, upstream_port: int = 5432, dbname: str = "test") -> Iterator[Bouncer]:
    """Debian's PgBouncer in ``pool_mode`` (session or transaction) on a free port, as the ``postgres`` user,
    serving the server's database ``dbname`` as ``test``."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail(
            "needs pgbouncer to test through a connection pooler: install pgbouncer (apt-get install pgbouncer)"
        )
    root = Path(tempfile.mkdtemp(prefix="rivet-bouncer-"))
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"test = host=127.0.0.1 port={upstream_port} dbname={dbname} user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root}/users.txt\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = 8\nmax_client_conn = 100\n"
        f"logfile = {root}/log\npidfile = {root}/pid\n"
    )
    run_as: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        for path in [root, *root.iterdir()]:
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, binary, "-d", str(root / "pgbouncer.ini")], check=True, capture_output=True)
    from tests.chunkrun import wait_until

    try:
        wait_until(lambda: _answers(port), f"pgbouncer answers on port {port}")
        yield Bouncer(port, pool_mode)
    finally:
        pid = root / "pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], capture_output=True)
            wait_until(lambda: not _answers(port), f"pgbouncer on port {port} stops")
        shutil.rmtree(root, ignore_errors=True)


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0

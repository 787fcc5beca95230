"""Throwaway database servers configured otherwise than the machine's own, started from the local
binaries on a free port (initdb and pg_ctl run as the ``postgres`` user) and removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway PostgreSQL on 127.0.0.1 (its socket in ``root``); ``postgres`` is trusted."""

    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    @property
    def source(self) -> dict[str, object]:
        """The ``source:`` settings that reach it."""
        return {"type": "postgres", "url": self.url}


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

"""Fixtures: a real PostgreSQL and MariaDB/MySQL (never mocked), unique tables, readers of written files."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

# Tests start their own collectors and traces: none from the environment that runs them.
for _variable in [v for v in os.environ if v.startswith("OTEL_")] + ["TRACEPARENT", "RIVET_OTEL_METRICS_BY_PARENT"]:
    os.environ.pop(_variable, None)

PG_URL = os.environ.get("RIVET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("RIVET_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def pg_url(sslmode: str = "disable") -> str:
    """The test database URL with an sslmode."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}sslmode={sslmode}"


def pg_source() -> dict[str, str]:
    """The ``source:`` block of the test PostgreSQL."""
    return {"type": "postgres", "url": pg_url()}


def my_source() -> dict[str, str]:
    """The ``source:`` block of the test MariaDB."""
    return {"type": "mysql", "url": MYSQL_URL}


@pytest.fixture(scope="session")
def pg_conn() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.exit(f"PostgreSQL is not reachable at {PG_URL}: {e} (run scripts/ensure-services)", returncode=1)
    yield conn
    conn.close()


@pytest.fixture
def pg(pg_conn: psycopg.Connection) -> psycopg.Connection:
    return pg_conn


@pytest.fixture
def pg_table(pg_conn: psycopg.Connection) -> Iterator[Callable[[str], str]]:
    """Create uniquely named tables from a body SQL using ``{t}``; drop them afterwards."""
    made: list[str] = []

    def make(sql: str) -> str:
        name = f"rt_{uuid.uuid4().hex[:10]}"
        pg_conn.execute(sql.format(t=name))
        made.append(name)
        return name

    yield make
    for name in made:
        pg_conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')


def _database_url(name: str) -> str:
    base, _, query = PG_URL.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}"
    return f"{url}?{query}" if query else url


@pytest.fixture
def pg_state_url(pg_conn: psycopg.Connection) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test's state."""
    name = f"rivet_state_{uuid.uuid4().hex[:10]}"
    pg_conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _database_url(name)
    finally:
        pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _mysql_params(url: str) -> dict[str, object]:
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
        "database": u.path.lstrip("/") or "test",
    }


@pytest.fixture(scope="session")
def my_conn() -> Iterator[pymysql.connections.Connection]:
    try:
        conn = pymysql.connect(
            **_mysql_params(MYSQL_URL),
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=5,
            init_command="SET time_zone = '+00:00'",
        )
    except pymysql.err.OperationalError as e:
        pytest.exit(f"MariaDB/MySQL is not reachable at {MYSQL_URL}: {e} (run scripts/ensure-services)", returncode=1)
    yield conn
    conn.close()


def my_query(conn: pymysql.connections.Connection, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on the MySQL test connection and return its rows."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


@pytest.fixture
def my_table(my_conn: pymysql.connections.Connection) -> Iterator[Callable[[str], str]]:
    """Like ``pg_table`` on MariaDB/MySQL: statements separated by ``;`` using ``{t}``."""
    made: list[str] = []

    def make(sql: str) -> str:
        name = f"rt_{uuid.uuid4().hex[:10]}"
        made.append(name)
        for statement in filter(str.strip, sql.format(t=name).split(";\n")):
            my_query(my_conn, statement)
        return name

    yield make
    for name in made:
        my_query(my_conn, f"DROP TABLE IF EXISTS `{name}`")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    return d


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(root: Path) -> None:
    """A test CA (``ca.pem``) and a server certificate for ``localhost`` (``server.pem``, ``server.key``)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rivet test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=root)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=root)  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=root)  # fmt: skip


def visible_parts(directory: Path) -> list[Path]:
    """Files a downstream reader would pick up (not hidden staging files)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".parquet", ".csv", ".gz", ".zst"))


# -- S3: a moto server on loopback ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, started and stopped here."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    monkeypatch.setenv("RIVET_T_KEY", "testing")
    monkeypatch.setenv("RIVET_T_SECRET", "testing")
    name = f"rivet-{free_port()}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


def s3_destination(bucket: str, endpoint: str, prefix: str) -> dict[str, str]:
    """A destination: block for ``prefix`` in the moto bucket, credentials from the environment."""
    return {
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_env": "RIVET_T_KEY",
        "secret_key_env": "RIVET_T_SECRET",
    }


@pytest.fixture
def orders(pg, pg_table) -> str:
    """A PostgreSQL orders table of 3000 rows (tests/orders.py)."""
    from tests.orders import insert_orders

    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, amount numeric(12,3), at timestamptz, note text)")
    insert_orders(pg, table, 1, 3000)
    return table


@pytest.fixture
def slow(pg):
    """A STABLE function that sleeps per row a chunk outputs (planning never calls it)."""
    name = f"rivet_orders_slow_{os.getpid()}"
    pg.execute(
        f"CREATE OR REPLACE FUNCTION {name}(v int, seconds float8) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(seconds); RETURN v; END $$"
    )
    yield name
    pg.execute(f"DROP FUNCTION {name}(int, float8)")


# -- A PostgreSQL with passwords and TLS (its own CA) --------------------------------------

AUTH_HBA = """\
local all all trust
host all md5_user 127.0.0.1/32 md5
host all plain_user 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
"""


@dataclass(frozen=True)
class AuthServer:
    port: int
    ca: Path  # the test CA that issued the server's certificate (for localhost)
    socket_dir: Path


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    """A throwaway PostgreSQL that demands passwords (SCRAM, MD5, cleartext), with TLS for localhost."""
    from tests.servers import postgres_cluster

    def prepare(root: Path) -> None:
        (root / "pw").write_text("scram-secret\n")
        make_certificates(root)
        (root / "server.key").chmod(0o600)

    with postgres_cluster(
        initdb=("--pwfile={root}/pw", "-A", "scram-sha-256"),
        prepare=prepare,
        hba=AUTH_HBA,
        ssl="on",
        ssl_cert_file="{root}/server.pem",
        ssl_key_file="{root}/server.key",
    ) as cluster:
        # Over the socket, where postgres is trusted.
        with psycopg.connect(host=str(cluster.root), port=cluster.port, user="postgres", dbname="postgres") as sql:
            sql.execute("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'")
            sql.execute("CREATE ROLE plain_user LOGIN PASSWORD 'plain-secret'")
            sql.commit()
        yield AuthServer(cluster.port, cluster.root / "ca.pem", cluster.root)


# -- Azure Blob: azurite (from npm, installed by make install) on loopback ---------------

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """azurite-blob, started here; the destination settings of a container in it."""
    import fsspec

    from tests.chunkrun import wait_until

    npm_dir = Path(os.environ.get("RIVET_NPM_DIR", Path.home() / ".cache" / "rivet-npm"))
    binary = npm_dir / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"azurite is not installed at {binary}: run make install (it needs npm)", pytrace=False)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listening(port), f"azurite listens on port {port}", proc)
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
        fs = fsspec.filesystem("abfs", connection_string=connection)
        fs.mkdir("rivet")
        yield {"type": "azure", "container": "rivet", "storage_options": {"connection_string": connection}}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def gcs() -> Iterator[dict[str, Any]]:
    """gcp-storage-emulator in this process; the destination settings of a bucket in it."""
    from gcp_storage_emulator.server import create_server

    from tests.chunkrun import wait_until

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="rivet")
    server.start()
    wait_until(lambda: listening(port), f"the GCS emulator listens on port {port}")
    try:
        yield {"type": "gcs", "bucket": "rivet", "endpoint": f"http://127.0.0.1:{port}", "allow_anonymous": True}
    finally:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a catalog or collector gone silent."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


# The source fixture (each database in turn), for tests written once for every database.
from tests.sources import database_server, source  # noqa: E402, F401

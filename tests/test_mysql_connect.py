"""Connecting to MariaDB: passwords and every TLS mode, against a throwaway server with its own CA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, RivetError, SourceConnectionError
from tests.conftest import make_certificates
from tests.servers import mariadb_server

pytestmark = pytest.mark.mysql

CIPHER = "SELECT VARIABLE_VALUE AS cipher FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"


@dataclass(frozen=True)
class Server:
    port: int
    ca: Path  # the CA that signed the server certificate (issued for "localhost")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A throwaway MariaDB with TLS (a test CA) and users that need a password or TLS."""
    setup = (
        "CREATE USER 'pw_user'@'%' IDENTIFIED BY 's3cret;@/'; GRANT ALL ON test.* TO 'pw_user'@'%'; "
        "CREATE USER 'tls_user'@'%' IDENTIFIED BY 'tls' REQUIRE SSL; GRANT ALL ON test.* TO 'tls_user'@'%';"
    )
    tls = ("--ssl-ca={root}/ca.pem", "--ssl-cert={root}/server.pem", "--ssl-key={root}/server.key")
    with mariadb_server(options=tls, prepare=make_certificates, setup=setup) as running:
        yield Server(running.port, running.root / "ca.pem")


def _source(server: Server, **fields: object) -> dict[str, object]:
    return {"type": "mysql", "host": "127.0.0.1", "port": server.port, "user": "pw_user",
            "password": "s3cret;@/", "database": "test", **fields}  # fmt: skip


def _cipher(source: dict[str, object] | str, out: Path) -> str:
    result = rivet.export(source, query=CIPHER, destination=str(out))
    return str(pq.read_table(result.files[0]).column("cipher")[0].as_py() or "")


def _verified(server: Server, **fields: object) -> dict[str, object]:
    """The source over TLS that proves the server: its CA, and the host name its certificate names."""
    return _source(server, host="localhost", tls={"mode": "verify-full", "ca_file": str(server.ca)}, **fields)


def test_password_in_a_url_is_percent_decoded(server: Server, tmp_path: Path) -> None:
    url = f"mysql://pw_user:s3cret%3B%40%2F@localhost:{server.port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={server.ca}"
    assert _cipher(url, tmp_path)


def test_wrong_password_is_a_clear_error_without_the_password(server: Server, tmp_path: Path) -> None:
    with pytest.raises(RivetError, match="Access denied for user 'pw_user'") as err:
        rivet.export(_verified(server, password="nope"), query="SELECT 1", destination=str(tmp_path))
    assert "nope" not in str(err.value)


@pytest.mark.parametrize(("mode", "channel"), [("disable", "plaintext"), ("prefer", "tls-unverified"),
                                               ("require", "tls-unverified")])  # fmt: skip
def test_a_native_password_hash_goes_to_an_unproven_server_only_with_the_opt_in(server, tmp_path, mode, channel):
    with pytest.raises(SourceConnectionError, match=f"mysql_native_password hash over a {channel} connection"):
        rivet.export(_source(server, tls={"mode": mode}), query="SELECT 1", destination=str(tmp_path / "refused"))
    opted_in = _source(server, tls={"mode": mode, "allow_unverified_password": True})
    assert bool(_cipher(opted_in, tmp_path / "opted-in")) is (mode != "disable")


def test_ssl_mode_in_the_url(server: Server, tmp_path: Path) -> None:
    url = f"mysql://tls_user:tls@localhost:{server.port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={server.ca}"
    assert _cipher(url, tmp_path)
    refused = f"mysql://tls_user:tls@127.0.0.1:{server.port}/test?ssl-mode=REQUIRED"
    with pytest.raises(SourceConnectionError, match="mysql_native_password hash over a tls-unverified connection"):
        _cipher(refused, tmp_path / "refused")


def test_a_user_that_requires_tls_is_refused_in_plain_text(server: Server, tmp_path: Path) -> None:
    source = _source(
        server, user="tls_user", password="tls", tls={"mode": "disable", "allow_unverified_password": True}
    )
    with pytest.raises(RivetError, match="Access denied for user 'tls_user'"):
        rivet.export(source, query="SELECT 1", destination=str(tmp_path))


def test_connectorx_reads_under_the_same_rules(server: Server, tmp_path: Path) -> None:
    # An unverified channel without the opt-in: the password would go in whatever form the server asks.
    unproven = {**_source(server, tls={"mode": "require"}), "engine": "connectorx"}
    with pytest.raises(RivetError, match="mysql_native_password hash over a tls-unverified connection"):
        rivet.export(unproven, query=CIPHER, destination=str(tmp_path / "unproven"))
    for mode in ("require", "prefer"):  # prefer: as the native reader found it, TLS here
        opted_in = {**_source(server, tls={"mode": mode, "allow_unverified_password": True}), "engine": "connectorx"}
        result = rivet.export(opted_in, query=CIPHER, destination=str(tmp_path / mode))
        assert result.engine == "connectorx"
        assert pq.read_table(result.files[0]).column("cipher")[0].as_py()  # connectorx's own connection is encrypted


def test_verify_full_accepts_the_certificate_for_its_host(server: Server, tmp_path: Path) -> None:
    source = _source(server, host="localhost", tls={"mode": "verify-full", "ca_file": str(server.ca)})
    assert _cipher(source, tmp_path)


def test_verify_full_refuses_another_host_name(server: Server, tmp_path: Path) -> None:
    source = _source(server, tls={"mode": "verify-full", "ca_file": str(server.ca)})
    with pytest.raises(SourceConnectionError, match=r"127\.0\.0\.1.*(certificate|NotValidForName)"):
        rivet.export(source, query="SELECT 1", destination=str(tmp_path))


def test_verify_ca_checks_the_chain_but_not_the_name(server: Server, tmp_path: Path) -> None:
    ok = _source(server, tls={"mode": "verify-ca", "ca_file": str(server.ca)})
    assert _cipher(ok, tmp_path / "ok")
    # Without a CA file verify-ca would take any certificate a public CA issued for any host: refused, as libpq does.
    with pytest.raises(ConfigError, match=r"verify-ca needs tls\.ca_file"):
        rivet.export(_source(server, tls={"mode": "verify-ca"}), query="SELECT 1", destination=str(tmp_path / "x"))

"""Connecting: password methods and TLS modes against a throwaway server with its own test CA."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, SourceConnectionError
from tests.conftest import PG_URL, AuthServer, make_certificates, pg_url

pytestmark = pytest.mark.postgres


def _who(source: dict[str, object], out: Path) -> str:
    result = rivet.export(source, query="SELECT current_user::text AS who", destination=str(out))
    return str(pq.read_table(result.files[0]).column("who")[0])


def _auth_source(server: AuthServer, user: str, password: str, **tls: object) -> dict[str, object]:
    return {
        "type": "postgres",
        "host": tls.pop("host", "127.0.0.1"),
        "port": server.port,
        "user": user,
        "password": password,
        "database": "postgres",
        "tls": tls,
    }


PLAIN_FORMS = [("md5_user", "md5-secret", "MD5"), ("plain_user", "plain-secret", "cleartext")]


def test_scram_works_over_any_channel(auth_server: AuthServer, tmp_path: Path) -> None:
    assert _who(_auth_source(auth_server, "postgres", "scram-secret", mode="disable"), tmp_path / "a") == "postgres"
    url = f"postgresql://postgres:scram-secret@127.0.0.1:{auth_server.port}/postgres?sslmode=require"
    assert _who(url, tmp_path / "b") == "postgres"  # type: ignore[arg-type]


@pytest.mark.parametrize(("user", "password", "form"), PLAIN_FORMS)
@pytest.mark.parametrize("mode", ["disable", "require", "prefer"])
def test_plain_passwords_never_go_to_an_unproven_server(auth_server, tmp_path, user, password, form, mode):
    with pytest.raises(SourceConnectionError, match=f"password in {form} form over a (plaintext|tls-unverified)"):
        _who(_auth_source(auth_server, user, password, mode=mode), tmp_path)


@pytest.mark.parametrize(("user", "password", "form"), PLAIN_FORMS)
def test_plain_passwords_go_over_verified_tls_or_with_the_opt_in(auth_server, tmp_path, user, password, form):
    verified = _auth_source(auth_server, user, password, mode="verify-full", ca_file=str(auth_server.ca))
    verified["host"] = "localhost"
    assert _who(verified, tmp_path / "verified") == user
    opted_in = _auth_source(auth_server, user, password, mode="disable", allow_unverified_password=True)
    assert _who(opted_in, tmp_path / "opt-in") == user


def test_scram_channel_binding(auth_server: AuthServer, tmp_path: Path) -> None:
    bound = _auth_source(auth_server, "postgres", "scram-secret", mode="require", channel_binding="require")
    assert _who(bound, tmp_path / "bound") == "postgres"
    plain = _auth_source(auth_server, "postgres", "scram-secret", mode="disable", channel_binding="require")
    with pytest.raises(SourceConnectionError, match="channel_binding is require, but the connection cannot bind"):
        _who(plain, tmp_path / "plain")
    md5 = _auth_source(auth_server, "md5_user", "md5-secret", mode="require", channel_binding="require")
    with pytest.raises(SourceConnectionError, match="asks for a MD5 password, but channel_binding is require"):
        _who(md5, tmp_path / "md5")


def test_connectorx_gets_no_password_an_unproven_server_could_ask_for(auth_server, tmp_path: Path) -> None:
    # SCRAM over plaintext is safe for the native reader (it proves the server knows the password); connectorx
    # would answer a cleartext or MD5 request from whoever answers, so it is refused, or not chosen by auto.
    plain = _auth_source(auth_server, "postgres", "scram-secret", mode="disable")
    with pytest.raises(ConfigError, match="connectorx would send the password in whatever form the server asks"):
        rivet.export({**plain, "engine": "connectorx"}, query="SELECT 1 AS x", destination=str(tmp_path / "cx"))
    chosen = rivet.export({**plain, "engine": "auto"}, query="SELECT 1 AS x", destination=str(tmp_path / "auto"))
    assert chosen.engine == "native" and chosen.rows == 1
    verified = _auth_source(auth_server, "postgres", "scram-secret", mode="verify-full", ca_file=str(auth_server.ca))
    verified["host"] = "localhost"
    bound = {**verified, "tls": {**verified["tls"], "channel_binding": "require"}, "engine": "connectorx"}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="channel_binding: require is enforced by the native reader only"):
        rivet.export(bound, query="SELECT 1 AS x", destination=str(tmp_path / "bound"))


def test_password_from_an_environment_variable(auth_server: AuthServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RIVET_T_PW", "scram-secret")
    source = {
        "type": "postgres",
        "host": "127.0.0.1",
        "port": auth_server.port,
        "user": "postgres",
        "database": "postgres",
        "password_env": "RIVET_T_PW",
        "tls": {"mode": "disable"},
    }
    assert rivet.export(source, query="SELECT 1 AS x", destination=str(tmp_path)).rows == 1


def test_wrong_password_is_a_clear_connection_error(auth_server: AuthServer, tmp_path: Path) -> None:
    url = f"postgresql://postgres:nope@127.0.0.1:{auth_server.port}/postgres?sslmode=disable"
    with pytest.raises(SourceConnectionError, match='password authentication failed for user "postgres"') as err:
        rivet.export(url, query="SELECT 1", destination=str(tmp_path))
    assert err.value.code == "28P01"
    assert "nope" not in str(err.value)


def test_missing_password_says_so(auth_server: AuthServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = f"postgresql://postgres@127.0.0.1:{auth_server.port}/postgres?sslmode=disable"
    with pytest.raises(SourceConnectionError, match="asks user 'postgres' for a password and none was given"):
        rivet.export(url, query="SELECT 1", destination=str(tmp_path))


def _ssl_in_use(source: dict[str, object], tmp_path: Path) -> bool:
    result = rivet.export(
        source, query="SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", destination=str(tmp_path)
    )
    return bool(pq.read_table(result.files[0]).column("ssl")[0].as_py())


@pytest.mark.parametrize(("mode", "encrypted"), [("disable", False), ("prefer", True), ("require", True)])
def test_tls_modes_that_do_not_verify(auth_server: AuthServer, tmp_path: Path, mode: str, encrypted: bool) -> None:
    assert _ssl_in_use(_auth_source(auth_server, "postgres", "scram-secret", mode=mode), tmp_path) is encrypted


def _tls_source(server: AuthServer, mode: str, host: str, ca_file: Path) -> dict[str, object]:
    return _auth_source(server, "postgres", "scram-secret", mode=mode, host=host, ca_file=str(ca_file))


def test_verify_full_accepts_a_trusted_certificate_for_its_host(auth_server: AuthServer, tmp_path: Path) -> None:
    # localhost: the name the test certificate is issued for.
    assert _ssl_in_use(_tls_source(auth_server, "verify-full", "localhost", auth_server.ca), tmp_path)


def test_verify_full_refuses_another_host_name(auth_server: AuthServer, tmp_path: Path) -> None:
    with pytest.raises(
        SourceConnectionError, match=r"TLS handshake with 127\.0\.0\.1 failed: invalid peer certificate"
    ):
        source = _tls_source(auth_server, "verify-full", "127.0.0.1", auth_server.ca)
        rivet.export(source, query="SELECT 1", destination=str(tmp_path))


def test_verify_ca_without_a_ca_file_is_refused(pg, tmp_path: Path) -> None:
    # The system's public CAs would vouch for any certificate they issued, for any host.
    source = {"type": "postgres", "url": PG_URL.partition("?")[0], "tls": {"mode": "verify-ca"}}
    with pytest.raises(ConfigError, match=r"verify-ca needs tls\.ca_file"):
        rivet.export(source, query="SELECT 1", destination=str(tmp_path))
    assert not (tmp_path / "_SUCCESS").exists()


def test_verify_ca_ignores_the_name_but_checks_the_chain(auth_server: AuthServer, tmp_path: Path) -> None:
    assert _ssl_in_use(_tls_source(auth_server, "verify-ca", "127.0.0.1", auth_server.ca), tmp_path / "ok")
    other = tmp_path / "other"  # a CA of the same name, which never signed the server's certificate
    other.mkdir()
    make_certificates(other)
    with pytest.raises(SourceConnectionError, match="invalid peer certificate: BadSignature"):
        source = _tls_source(auth_server, "verify-ca", "127.0.0.1", other / "ca.pem")
        rivet.export(source, query="SELECT 1", destination=str(tmp_path / "bad"))


def test_a_weak_channel_to_another_machine_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    from rivet.sources.postgres.source import PostgresSource

    caplog.set_level("WARNING", logger="rivet")
    remote = PostgresSource(url="postgresql://reader@db.example.internal/shop")
    for _ in range(3):
        remote.warn_about_channel("plaintext")
    assert [r.getMessage() for r in caplog.records].count(
        "the connection to postgresql://reader@db.example.internal/shop is not encrypted: anyone on the network "
        "path can read the data (set tls.mode verify-full)"
    ) == 1
    caplog.clear()
    for chosen in (
        PostgresSource(url="postgresql://reader@db2.example.internal/shop?sslmode=require"),
        PostgresSource(host="db3.example.internal", user="r", database="d", tls_mode="prefer"),
        PostgresSource(host="127.0.0.1", user="r", database="d"),
        PostgresSource(host="/var/run/postgresql", user="r", database="d"),
    ):
        chosen.warn_about_channel("tls-unverified")
    assert caplog.records == []


def test_unix_socket_host(auth_server: AuthServer, tmp_path: Path) -> None:
    source = {
        "type": "postgres",
        "host": str(auth_server.socket_dir),
        "port": auth_server.port,
        "user": "postgres",
        "database": "postgres",
    }
    result = rivet.export(source, query="SELECT inet_server_addr() IS NULL AS local", destination=str(tmp_path))
    assert pq.read_table(result.files[0]).column("local").to_pylist() == [True]  # no TCP address: the socket


def test_an_unencrypted_or_unverified_connection_is_said_once_and_check_shows_it(
    pg, auth_server: AuthServer, tmp_path: Path
) -> None:
    from tests.outputs import run_rivet

    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source:\n  type: postgres\n  url: "{pg_url("disable")}"\nexports:\n'
        "  - name: a\n    query: SELECT 1 AS x\n    destination: out/a\n"
        "  - name: b\n    query: SELECT 2 AS x\n    destination: out/b\n"
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    # sslmode=disable was chosen, and the server is on this machine: nothing to warn about.
    assert "is not encrypted" not in ran.stderr
    checked = run_rivet("check", "-c", str(config))
    assert "connection: plaintext" in checked.stderr and checked.stderr.count("is not encrypted") == 1  # said once
    verified = tmp_path / "verified.yaml"
    verified.write_text(
        f"source:\n  type: postgres\n  host: localhost\n  port: {auth_server.port}\n  user: postgres\n"
        "  password: scram-secret\n  database: postgres\n"
        f"  tls: {{mode: verify-full, ca_file: {auth_server.ca}}}\nexports:\n  - name: a\n    query: SELECT 1 AS x\n"
        "    destination: out/v\n"
    )
    checked = run_rivet("check", "-c", str(verified))
    assert "connection: tls-verified" in checked.stderr and "not encrypted" not in checked.stderr

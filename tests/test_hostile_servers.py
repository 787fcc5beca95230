"""Servers that lie, stall or try to take a password: rivet fails cleanly, names the server, stays small."""

from __future__ import annotations

import hashlib
import json
import struct
import textwrap
from pathlib import Path

import pytest

import rivet
from rivet.errors import RivetError, SourceConnectionError
from tests.fake_servers import MY_OK, PG_LOGGED_IN, FakeServer, Peer, my_greeting, my_packet, pg_auth, pg_message
from tests.outputs import run_rivet

PASSWORD = "Canary-pw-4242"


def pg_url(server: FakeServer) -> str:
    return f"postgresql://u:{PASSWORD}@127.0.0.1:{server.port}/d?sslmode=disable"


def pg_source(server: FakeServer) -> dict[str, object]:
    """The fake server as a source that gives up after 2 s of silence."""
    return {"type": "postgres", "url": pg_url(server), "read_timeout_s": 2}


def after_login(answer: bytes) -> object:
    """A server that logs the client in (trust), then answers its first request with ``answer``."""

    def script(peer: Peer) -> None:
        peer.pg_startup()
        peer.send(PG_LOGGED_IN)
        while peer.pg_message()[0] != b"S":
            pass
        peer.send(answer)
        while True:
            peer.pg_message()

    return script


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(script) -> FakeServer:
        server = FakeServer(script)
        servers.append(server)
        return server

    yield start
    failed = []
    for server in servers:
        try:
            server.close()
        except AssertionError as e:
            failed.append(e)
    if failed:
        raise failed[0]


def export_in_a_child(tmp_path: Path, url: str, *, tuning: str = "{max_retries: 0}") -> dict:
    """``rivet run --json`` against ``url``: the export's summary (its peak RSS included)."""
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            source:
              type: {url.split(":", 1)[0].replace("postgresql", "postgres")}
              url: "{url}"
              read_timeout_s: 2
            exports:
              - name: x
                query: SELECT 1 AS one
                destination: out
                tuning: {tuning}
            """
        )
    )
    proc = run_rivet("run", "-c", str(config), "--json", timeout=120)
    doc = json.loads(proc.stdout)["exports"][0]
    assert PASSWORD not in proc.stdout + proc.stderr
    return {**doc, "code": proc.returncode}


def test_an_oversized_message_during_login_is_refused(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.pg_startup()
        peer.send(b"R" + struct.pack("!i", 100 << 20))

    server = serve(script)
    with pytest.raises(SourceConnectionError, match=r"announced a message of 104857600 bytes, more than the 1048576"):
        rivet.export(pg_url(server), query="SELECT 1", destination=str(tmp_path))


def test_a_two_gigabyte_announcement_after_login_costs_nothing(serve, tmp_path):
    server = serve(after_login(b"T" + struct.pack("!i", 2**31 - 1)))
    result = export_in_a_child(tmp_path, pg_url(server))
    assert result["code"] == 1 and "announced a message of 2147483647 bytes" in result["error"]
    assert f"127.0.0.1:{server.port}" in result["error"]
    assert result["peak_rss_mb"] < 200


def test_a_message_announced_but_never_sent_costs_only_what_arrived(serve, tmp_path):
    server = serve(after_login(b"T" + struct.pack("!i", 900 << 20) + b"\x00" * 4096))
    result = export_in_a_child(tmp_path, pg_url(server))
    assert result["code"] == 1 and "sent nothing for 2 s" in result["error"]
    assert result["peak_rss_mb"] < 200


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (pg_message(b"T", struct.pack("!h", 5) + b"a\x00"), "malformed"),
        (pg_message(b"T", struct.pack("!h", -3)), "malformed"),
        (b"\x00" * 64, "bad message length"),
        (pg_message(b"Q", b"nonsense"), "unexpected message"),
        (pg_message(b"E", b"SERROR\x00Mboom\x00\x00") + b"\xff\xff", "boom"),
    ],
    ids=["short-row-description", "negative-count", "garbage", "unknown-tag", "error-then-garbage"],
)
def test_malformed_answers_are_clean_errors(serve, tmp_path, answer, expected):
    server = serve(after_login(answer))
    with pytest.raises(RivetError, match=expected) as err:
        rivet.export(pg_source(server), query="SELECT 1", destination=str(tmp_path), tuning={"max_retries": 0})
    assert PASSWORD not in str(err.value)


def test_a_silent_server_ends_the_export_after_the_read_timeout(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.pg_startup()
        peer.send(PG_LOGGED_IN)
        while True:
            peer.pg_message()  # never answers

    server = serve(script)
    result = export_in_a_child(tmp_path, pg_url(server))
    assert result["code"] == 1 and "sent nothing for 2 s" in result["error"]


def test_scram_without_the_servers_proof_is_refused(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.pg_startup()
        peer.send(pg_auth(10, b"SCRAM-SHA-256\x00\x00"))
        _, body = peer.pg_message()
        client_first = body[body.index(b"n,,") :].decode()
        nonce = client_first.split("r=", 1)[1]
        server_first = f"r={nonce}server,s=c2FsdHNhbHQ=,i=4096".encode()
        peer.send(pg_auth(11, server_first))
        peer.pg_message()  # the client's proof
        peer.send(pg_auth(0) + pg_message(b"Z", b"I"))  # "welcome", without AuthenticationSASLFinal

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="accepted the login without proving it knows the password"):
        rivet.export(pg_url(server), query="SELECT 1", destination=str(tmp_path))


def test_a_cleartext_password_request_over_plaintext_gets_no_password(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.pg_startup()
        peer.send(pg_auth(3))
        peer.pg_message()

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="password in cleartext form over a plaintext connection"):
        rivet.export(pg_url(server), query="SELECT 1", destination=str(tmp_path))
    assert PASSWORD.encode() not in server.received()


# -- MySQL -------------------------------------------------------------------------------


def my_url(server: FakeServer, mode: str = "DISABLED") -> str:
    return f"mysql://u:{PASSWORD}@127.0.0.1:{server.port}/d?ssl-mode={mode}"


def test_mysql_full_authentication_over_plaintext_gets_no_password(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.send(my_greeting("caching_sha2_password"))
        peer.my_packet()  # the scrambled login
        peer.send(my_packet(b"\x01\x04", 2))  # "send me the password itself"
        peer.my_packet()

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="sends the password itself; rivet does that only over verified"):
        rivet.export(my_url(server), query="SELECT 1", destination=str(tmp_path))
    assert PASSWORD.encode() not in server.received()


def test_mysql_a_native_password_request_over_plaintext_gets_no_hash(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.send(my_greeting("mysql_native_password"))
        peer.my_packet()

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="mysql_native_password hash over a plaintext connection"):
        rivet.export(my_url(server), query="SELECT 1", destination=str(tmp_path))
    salt = b"abcdefghijklmnopqrst"  # my_greeting's
    stage1 = hashlib.sha1(PASSWORD.encode()).digest()
    mask = hashlib.sha1(salt + hashlib.sha1(stage1).digest()).digest()
    scramble = bytes(a ^ b for a, b in zip(stage1, mask, strict=True))
    received = server.received()
    assert scramble not in received and b"\x00u\x00" not in received  # no login packet: no hash, not even the user


def test_mysql_bytes_before_the_tls_handshake_are_refused(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.send(my_greeting("mysql_native_password", tls=True, extra=b"\x05\x00\x00\x02smuggled"))
        peer.my_packet()

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="sent data before the TLS handshake"):
        rivet.export(my_url(server, "REQUIRED"), query="SELECT 1", destination=str(tmp_path))


def test_mysql_an_oversized_greeting_is_refused(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.send(b"\xff\xff\xff\x00" + b"\x0a" * 1024)

    server = serve(script)
    with pytest.raises(SourceConnectionError, match="more than the 1048576"):
        rivet.export(my_url(server), query="SELECT 1", destination=str(tmp_path))


def test_mysql_an_absurd_column_count_is_refused_before_allocation(serve, tmp_path):
    def script(peer: Peer) -> None:
        peer.send(my_greeting("mysql_native_password"))
        peer.my_packet()
        peer.send(MY_OK)
        peer.my_packet()  # SET time_zone
        peer.send(my_packet(b"\xfe" + (1 << 40).to_bytes(8, "little"), 1))
        peer.my_packet()

    server = serve(script)
    # A user without a password: over plaintext a password's hash would not be sent at all.
    result = export_in_a_child(tmp_path, my_url(server).replace(f":{PASSWORD}@", "@"))
    assert result["code"] == 1 and "too many columns" in result["error"]
    assert result["peak_rss_mb"] < 200

"""Small hostile servers: PostgreSQL and MySQL on 127.0.0.1 that answer from a script.

Each server accepts connections on a thread and hands every socket to ``script``,
recording what the client sent, so a test can check both rivet's reaction and what
rivet did not say (a password it must not send).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

Script = Callable[["Peer"], None]


class Peer:
    """One accepted connection, with what the client sent on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()

    def read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            data += chunk
        self.received += data
        return bytes(data)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- PostgreSQL -------------------------------------------------------------------

    def pg_startup(self) -> bytes:
        """Read the client's startup packet (answering an SSLRequest with 'N')."""
        while True:
            (length,) = struct.unpack("!i", self.read(4))
            body = self.read(length - 4)
            if body[:4] == struct.pack("!i", 80877103):
                self.send(b"N")
                continue
            return body

    def pg_message(self) -> tuple[bytes, bytes]:
        """Read one frontend message: (tag, body)."""
        tag = self.read(1)
        (length,) = struct.unpack("!i", self.read(4))
        return tag, self.read(length - 4)

    # -- MySQL ------------------------------------------------------------------------

    def my_packet(self) -> bytes:
        """Read one client packet's payload."""
        header = self.read(4)
        return self.read(int.from_bytes(header[:3], "little"))


class FakeServer:
    """Accepts connections and runs ``script`` on each, until closed."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self._scripts: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            peer = Peer(sock)
            self.peers.append(peer)
            script = threading.Thread(target=self._run, args=(peer,), daemon=True)
            self._scripts.append(script)
            script.start()

    def _run(self, peer: Peer) -> None:
        try:
            self.script(peer)
        except (ConnectionError, OSError):
            pass
        except BaseException as e:  # noqa: BLE001 - raised again by close()
            self.errors.append(e)
        finally:
            peer.sock.close()

    def received(self) -> bytes:
        """Everything every client sent."""
        return b"".join(bytes(p.received) for p in self.peers)

    def close(self) -> None:
        """Stop serving; a script that failed (a broken server, not rivet's doing) fails the test here."""
        self.listener.close()
        for peer in self.peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)  # wakes a script waiting on its client
        for script in self._scripts:
            script.join(timeout=10)
        if self.errors:
            raise AssertionError(f"the fake server's script failed: {self.errors[0]!r}") from self.errors[0]


def pg_message(tag: bytes, body: bytes = b"") -> bytes:
    """A backend message."""
    return tag + struct.pack("!i", len(body) + 4) + body


def pg_auth(code: int, data: bytes = b"") -> bytes:
    """An Authentication* message."""
    return pg_message(b"R", struct.pack("!i", code) + data)


PG_READY = pg_message(b"Z", b"I")
PG_LOGGED_IN = pg_auth(0) + pg_message(b"K", struct.pack("!ii", 4242, 99)) + PG_READY


def my_packet(payload: bytes, seq: int) -> bytes:
    """A server packet."""
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def my_greeting(plugin: str = "caching_sha2_password", *, tls: bool = False, extra: bytes = b"") -> bytes:
    """A protocol-10 handshake packet (with bytes smuggled after it, if any)."""
    caps = 0x00000001 | 0x00000200 | 0x00008000 | 0x00080000 | 0x00200000 | 0x01000000
    if tls:
        caps |= 0x00000800
    salt = b"abcdefghijklmnopqrst"
    payload = (
        b"\x0a"
        + b"8.0.99-fake\x00"
        + struct.pack("<I", 7)
        + salt[:8]
        + b"\x00"
        + struct.pack("<H", caps & 0xFFFF)
        + b"\x2d"
        + struct.pack("<H", 2)
        + struct.pack("<H", caps >> 16)
        + bytes([21])
        + b"\x00" * 10
        + salt[8:]
        + b"\x00"
        + plugin.encode()
        + b"\x00"
    )
    return my_packet(payload, 0) + extra


MY_OK = my_packet(b"\x00\x00\x00\x02\x00\x00\x00", 2)

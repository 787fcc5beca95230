"""SSH tunnels to a database behind a bastion (``source.ssh``): a local port forwarded through it.

Each process opens its own tunnel the first time it connects (fan-out children and cluster
workers included) and keeps it for its connections. The bastion's host key is always checked
against ``known_hosts`` (a new host is accepted only with ``accept_new_host_key``), keys are
read where the tunnel opens (a file, or an environment variable) and never logged. A tunnel
whose SSH connection dropped is opened again by the next connection, so a retried read goes on.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rivet.errors import ConfigError, SourceConnectionError, SourceError

log = logging.getLogger("rivet")
# Bytes moved per read between a local connection and its SSH channel.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class SshSettings:
    """Where the bastion is, who logs in, with which key, and which host keys to trust."""

    host: str
    port: int
    user: str
    key_file: str | None
    key_env: str | None
    passphrase_env: str | None
    known_hosts: str
    accept_new_host_key: bool
    connect_timeout_s: float = 30.0

    @property
    def shown(self) -> str:
        """``user@host:port`` for messages."""
        return f"{self.user}@{self.host}:{self.port}"


def forwarded(settings: SshSettings, target_host: str, target_port: int) -> tuple[str, int]:
    """The local address that reaches ``target_host:target_port`` through the bastion (this process's tunnel)."""
    key = (os.getpid(), settings, target_host, target_port)
    with _lock:
        tunnel = _tunnels.get(key)
        if tunnel is None:
            tunnel = _tunnels[key] = Tunnel(settings, target_host, target_port)
    tunnel.ensure_connected()
    return "127.0.0.1", tunnel.local_port


_lock = threading.Lock()
_tunnels: dict[tuple[Any, ...], Tunnel] = {}


class Tunnel:
    """A local listening port whose connections are carried to the target over one SSH connection."""

    def __init__(self, settings: SshSettings, target_host: str, target_port: int) -> None:
        self.settings, self.target = settings, (target_host, target_port)
        self._transport: Any = None
        self._connect_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="rivet-ssh-accept", daemon=True).start()

    def ensure_connected(self, *, stale: Any = None) -> Any:
        """The SSH connection, opened (or opened again) with the bastion's key checked.

        ``stale``: a connection that just failed to open a channel; it is replaced even if it
        has not noticed yet that its peer is gone.
        """
        with self._connect_lock:
            if self._transport is not None and self._transport is stale:
                self._transport.close()
            if self._transport is not None and self._transport.is_active():
                return self._transport
            if self._transport is not None:
                log.warning("the SSH connection to %s dropped: opening it again", self.settings.shown)
            self._transport = _open_transport(self.settings)
            return self._transport

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(client,), name="rivet-ssh-carry", daemon=True).start()

    def _carry(self, client: socket.socket) -> None:
        """Move bytes both ways between one local connection and a new channel to the target."""
        try:
            transport = self.ensure_connected()
            try:
                channel = transport.open_channel("direct-tcpip", self.target, client.getpeername())
            except Exception:  # noqa: BLE001 - a dropped SSH connection may not know it yet: once more
                transport = self.ensure_connected(stale=transport)
                channel = transport.open_channel("direct-tcpip", self.target, client.getpeername())
        except Exception as e:  # noqa: BLE001 - the database client sees a closed connection and reports it
            log.warning("the SSH tunnel through %s could not reach %s:%d: %s", self.settings.shown, *self.target, e)
            client.close()
            return
        threading.Thread(target=_pump, args=(channel, client), name="rivet-ssh-back", daemon=True).start()
        _pump(client, channel)


def _pump(source: Any, sink: Any) -> None:
    """Copy ``source`` to ``sink`` until either ends, then end both, so the other direction ends too.

    Both are shut down before they are closed: closing a socket another thread is reading
    neither wakes that thread nor tells the peer, and a database client would wait forever.
    """
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except (OSError, EOFError):
                pass
            try:
                end.close()
            except (OSError, EOFError):
                pass


def _open_transport(settings: SshSettings) -> Any:
    try:
        import paramiko
    except ImportError:
        raise ConfigError('source.ssh needs paramiko: pip install "rivet[ssh]"') from None
    key = _private_key(paramiko, settings)
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout_s)
    except OSError as e:
        raise SourceConnectionError(f"cannot reach the SSH bastion {settings.shown}: {e}") from None
    transport = paramiko.Transport(sock)
    transport.set_keepalive(30)
    try:
        transport.start_client(timeout=settings.connect_timeout_s)
        _check_host_key(paramiko, settings, transport.get_remote_server_key())
        transport.auth_publickey(settings.user, key)
    except paramiko.AuthenticationException:
        transport.close()
        raise SourceError(
            f"the SSH bastion {settings.shown} refused the key: check source.ssh.user and the key"
        ) from None
    except paramiko.SSHException as e:
        transport.close()
        raise SourceConnectionError(f"the SSH connection to {settings.shown} failed: {e}") from None
    except BaseException:
        transport.close()
        raise
    sock.settimeout(None)
    return transport


def _check_host_key(paramiko: Any, settings: SshSettings, offered: Any) -> None:
    """Refuse a bastion whose key is not the one ``known_hosts`` holds (or, unless allowed, not held at all)."""
    name = settings.host if settings.port == 22 else f"[{settings.host}]:{settings.port}"
    path = Path(settings.known_hosts)
    known = paramiko.HostKeys()
    if path.is_file():
        known.load(str(path))
    keys = known.lookup(name)
    if keys is not None and offered.get_name() in keys:
        if keys[offered.get_name()] == offered:
            return
        raise SourceError(
            f"the SSH bastion {name} offered a {offered.get_name()} key that differs from the one in {path}: "
            "someone may be in between, or the bastion was re-keyed. Check its fingerprint, then update "
            "known_hosts; nothing was sent"
        )
    if keys is not None:
        raise SourceError(
            f"the SSH bastion {name} offered a {offered.get_name()} key; {path} holds only "
            f"{', '.join(sorted(keys.keys()))} keys for it. Check its fingerprint, then add it; nothing was sent"
        )
    if not settings.accept_new_host_key:
        raise ConfigError(
            f"the SSH bastion {name} is not in {path}: add its key after checking its fingerprint "
            f"(ssh-keyscan -p {settings.port} {settings.host}), or set source.ssh.accept_new_host_key: true "
            "to trust it on first use"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="ascii") as f:
        f.write(f"{name} {offered.get_name()} {offered.get_base64()}\n")
    log.warning("trusting the SSH bastion %s on first use: its %s key is now in %s", name, offered.get_name(), path)


def _private_key(paramiko: Any, settings: SshSettings) -> Any:
    """The login key, from its file or environment variable (with its passphrase, if any)."""
    passphrase = None
    if settings.passphrase_env is not None:
        passphrase = os.environ.get(settings.passphrase_env) or None
        if passphrase is None:
            raise ConfigError(f"environment variable {settings.passphrase_env} (source.ssh.passphrase_env) is not set")
    if settings.key_env is not None:
        text = os.environ.get(settings.key_env)
        if not text:
            raise ConfigError(f"environment variable {settings.key_env} (source.ssh.key_env) is not set")
        where = f"the key in {settings.key_env}"
    else:
        assert settings.key_file is not None
        try:
            text = Path(settings.key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"source.ssh.key_file {settings.key_file} cannot be read: {e.strerror or e}") from None
        where = f"source.ssh.key_file {settings.key_file}"
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise ConfigError(f"{where} is encrypted: set source.ssh.passphrase_env") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise ConfigError(
        f"{where} is not an Ed25519, ECDSA or RSA private key paramiko can read (or the passphrase is wrong)"
    )

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
        import paramiko

        timeout = self.settings.connect_timeout_s
        try:
            transport = self.ensure_connected()
            try:
                channel = transport.open_channel("direct-tcpip", self.target, client.getpeername(), timeout=timeout)
            except paramiko.ChannelException:
                raise  # the bastion answered: it cannot reach the database (the connection is fine)
            except Exception:  # noqa: BLE001 - a dropped SSH connection may not know it yet: once more
                transport = self.ensure_connected(stale=transport)
                channel = transport.open_channel("direct-tcpip", self.target, client.getpeername(), timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the database client sees a closed connection and reports it
            log.warning("the SSH tunnel through %s could not reach %s:%d: %s", self.settings.shown, *self.target, e)
            _end(client)
            return
        threading.Thread(target=_pump, args=(channel, client), name="rivet-ssh-back", daemon=True).start()
        _pump(client, channel)


def _pump(source: Any, sink: Any) -> None:
    """Copy ``source`` to ``sink`` until either ends, then end both, so the other direction ends too."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    finally:
        _end(source)
        _end(sink)


def _end(end: Any) -> None:
    """Shut down, then close, a socket or channel.

    Closing a socket another thread is reading neither wakes that thread nor tells the peer,
    and a database client would wait forever.
    """
    for step in (lambda: end.shutdown(socket.SHUT_RDWR), end.close):
        try:
            step()
        except (OSError, EOFError):
            pass


def _open_transport(settings: SshSettings) -> Any:
    try:
        import paramiko
    except ImportError:
        raise ConfigError('source.ssh needs paramiko: pip install "rivet[ssh]"') from None
    key = _private_key(paramiko, settings)
    known = _known_keys(settings)
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout_s)
    except OSError as e:
        raise SourceConnectionError(f"cannot reach the SSH bastion {settings.shown}: {e}") from None
    # The socket keeps its timeout: paramiko's own thread polls with it (keepalives, closing).
    transport = paramiko.Transport(sock)
    transport.set_keepalive(30)
    if known.trusted:
        # Ask for a key type known_hosts holds, as ssh does, so a bastion with several is checked.
        options = transport.get_security_options()
        held = {k.get_name() for k in known.trusted}
        options.key_types = [t for t in options.key_types if t in held] + [
            t for t in options.key_types if t not in held
        ]
    try:
        transport.start_client(timeout=settings.connect_timeout_s)
        _check_host_key(settings, known, transport.get_remote_server_key())
        more = transport.auth_publickey(settings.user, key)
        if not transport.is_authenticated():
            raise SourceError(
                f"the SSH bastion {settings.shown} asks for more than a key ({', '.join(more)}); rivet logs in "
                "with a key only"
            )
    except paramiko.AuthenticationException:
        dropped = not transport.is_active()  # paramiko reports a connection lost while logging in so too
        transport.close()
        if dropped:
            raise SourceConnectionError(
                f"the SSH bastion {settings.shown} closed the connection while logging in"
            ) from None
        raise SourceError(
            f"the SSH bastion {settings.shown} refused the key: check source.ssh.user and the key"
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        transport.close()
        raise SourceConnectionError(f"the SSH connection to {settings.shown} failed: {e or type(e).__name__}") from None
    except BaseException:
        transport.close()
        raise
    return transport


@dataclass(frozen=True)
class KnownKeys:
    """The keys ``known_hosts`` holds for the bastion: trusted ones and ``@revoked`` ones."""

    name: str  # how known_hosts names the bastion: host, or [host]:port
    path: Path
    trusted: tuple[Any, ...]
    revoked: tuple[Any, ...]


def _known_keys(settings: SshSettings) -> KnownKeys:
    """The bastion's lines of known_hosts (plain or hashed names); ``@cert-authority`` lines are not used."""
    from paramiko.hostkeys import HostKeyEntry, HostKeys

    host = settings.host.lower()
    name = host if settings.port == 22 else f"[{host}]:{settings.port}"
    path = Path(settings.known_hosts)
    trusted, revoked = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise ConfigError(f"source.ssh.known_hosts {path} cannot be read: {why}") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
        try:
            entry = HostKeyEntry.from_line(line)
        except Exception:  # noqa: BLE001 - a line paramiko cannot read (a key type it lacks): not this bastion's
            entry = None
        if entry is None or entry.key is None:
            continue
        names = [n.lower() if not n.startswith("|1|") else n for n in entry.hostnames]
        if not any(n == name or (n.startswith("|1|") and HostKeys.hash_host(name, n) == n) for n in names):
            continue
        if marker == "@revoked":
            revoked.append(entry.key)
        elif marker is None:
            trusted.append(entry.key)
    return KnownKeys(name, path, tuple(trusted), tuple(revoked))


def _check_host_key(settings: SshSettings, known: KnownKeys, offered: Any) -> None:
    """Refuse a bastion whose key is revoked or not one known_hosts holds (unknown: unless allowed)."""
    kind = offered.get_name()
    if any(k == offered for k in known.revoked):
        raise SourceError(f"the SSH bastion {known.name} offered a {kind} key that {known.path} marks @revoked")
    if any(k == offered for k in known.trusted):
        return
    if any(k.get_name() == kind for k in known.trusted):
        raise SourceError(
            f"the SSH bastion {known.name} offered a {kind} key that differs from the one in {known.path}: "
            "someone may be in between, or the bastion was re-keyed. Check its fingerprint, then update "
            "known_hosts; nothing was sent"
        )
    if known.trusted:
        held = ", ".join(sorted({k.get_name() for k in known.trusted}))
        raise SourceError(
            f"the SSH bastion {known.name} offered a {kind} key; {known.path} holds only {held} keys for it. "
            "Check its fingerprint, then add it; nothing was sent"
        )
    if not settings.accept_new_host_key:
        raise ConfigError(
            f"the SSH bastion {known.name} is not in {known.path}: add its key after checking its fingerprint "
            f"(ssh-keyscan -p {settings.port} {settings.host}), or set source.ssh.accept_new_host_key: true "
            "to trust it on first use"
        )
    path = known.path
    path.parent.mkdir(parents=True, exist_ok=True)
    ends_cleanly = not path.exists() or path.stat().st_size == 0 or path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="ascii") as f:
        f.write(("" if ends_cleanly else "\n") + f"{known.name} {kind} {offered.get_base64()}\n")
    log.warning("trusting the SSH bastion %s on first use: its %s key is now in %s", known.name, kind, path)


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

"""What the network databases (PostgreSQL, MySQL/MariaDB) share: connection settings and overrides."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rivet.core.redact import redact_url
from rivet.errors import ConfigError
from rivet.sources.base import ColumnOverrides, scan_options
from rivet.sources.registry import catalog_for, dialect_for
from rivet.sources.tunnel import SshSettings, forwarded

if TYPE_CHECKING:
    import pyarrow as pa
    from typing_extensions import Self

    from rivet._native import BatchReader
    from rivet.config.tuning import Tuning
    from rivet.sources.base import Session
    from rivet.sources.catalog import Catalog
    from rivet.sources.changes import ChangeFeed, ChangeSpec
    from rivet.sources.dialect import Dialect

TEXT_TYPES = ("text", "string")
# What a weak channel means, for the warning printed once per source and process.
WEAK_CHANNELS = {
    "plaintext": "is not encrypted: anyone on the network path can read the data (set tls.mode verify-full)",
    "tls-unverified": (
        "is encrypted, but the server's certificate is not verified, so anyone in between could pose as "
        "the server (set tls.mode verify-full, with tls.ca_file for a private CA)"
    ),
}
_warned: set[str] = set()
# Commands that report the channel themselves (check, doctor) turn the warning off.
WARN_ABOUT_CHANNEL = True
LOOPBACK = ("localhost", "127.", "::1", "[::1]")
log = logging.getLogger("rivet")


@dataclass(frozen=True)
class NetworkSource:
    """Connection settings for a native reader (the password is never shown)."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    tls_mode: str | None = None
    ca_file: str | None = None
    accept_invalid_certs: bool = False
    accept_invalid_hostnames: bool = False
    connect_timeout_s: float = 30.0
    read_timeout_s: float | None = None
    allow_unverified_password: bool = False
    channel_binding: str | None = None
    # Where the secret fields came from, so another machine reads them itself: (field, "env" or "file", name).
    secret_refs: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)
    # An SSH bastion every connection goes through (each process opens its own tunnel).
    ssh: SshSettings | None = None

    kind: ClassVar[str] = ""
    scheme: ClassVar[str] = ""
    label: ClassVar[str] = ""
    # The native session class (rivet._native) that connects to this kind of server.
    session_type: ClassVar[str] = ""
    # How a single-stream read pages through its result on PostgreSQL (a cursor); MySQL streams
    # one statement whatever this says.
    read_method: ClassVar[str] = "cursor"
    dialect: ClassVar[Dialect]
    catalog: ClassVar[Catalog]

    def __init_subclass__(cls, *, kind: str, scheme: str, label: str, session_type: str, **kwargs: Any) -> None:
        """A server kind: its name in configs, URL scheme, name for people and native session class."""
        super().__init_subclass__(**kwargs)
        cls.kind, cls.scheme, cls.label, cls.session_type = kind, scheme, label, session_type
        cls.dialect = dialect_for(kind)
        cls.catalog = catalog_for(kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted()})"

    def connect_args(self) -> dict[str, Any]:
        """The dict the native reader takes: through this process's SSH tunnel when ``ssh`` is set."""
        args = self.target_args()
        if self.ssh is not None:
            args["dial_host"], args["dial_port"] = forwarded(self.ssh, *self.tunnelled_target())
        return args

    def tunnelled_target(self) -> tuple[str, int]:
        """The database's host and port, which the SSH tunnel forwards to (a Unix socket: ConfigError)."""
        target = self.target()
        if target["unix_socket"]:
            raise ConfigError("source.ssh forwards TCP: a Unix socket on the database host cannot be reached")
        return str(target["host"]), int(target["port"])

    def target_args(self) -> dict[str, Any]:
        """The settings of the database as the config names it (no tunnel)."""
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "tls_mode": self.tls_mode,
            "ca_file": self.ca_file,
            "accept_invalid_certs": self.accept_invalid_certs,
            "accept_invalid_hostnames": self.accept_invalid_hostnames,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "allow_unverified_password": self.allow_unverified_password,
            "channel_binding": self.channel_binding,
            "dial_host": None,
            "dial_port": None,
        }

    def redacted(self) -> str:
        """``scheme://user:***@host:port/db`` with any password hidden."""
        if self.url:
            return redact_url(self.url)
        auth = f"{self.user}{':***' if self.password else ''}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{auth}{self.host}{port}/{self.database or ''}"

    def quote_identifier(self, name: str) -> str:
        """``name`` quoted for this database."""
        return self.dialect.quote(name)

    def without_secrets(self) -> Self:
        """A copy that carries no secret, only where to read each (for tasks on other machines).

        Raises ConfigError for a secret written in the config itself: another machine could
        only get it by being sent it.
        """
        refs = {f for f, _, _ in self.secret_refs}
        if self.password and "password" not in refs:
            raise ConfigError(
                "source.password is written in the config: on a cluster each worker reads it from its own "
                "environment, so give it as source.password_env (or url_env)"
            )
        if self.url and "url" not in refs and redact_url(self.url) != self.url:
            raise ConfigError(
                "source.url holds a password: on a cluster each worker reads it from its own environment, so "
                "give the URL as source.url_env (or the password as source.password_env)"
            )
        return dataclasses.replace(
            self,
            url=None if "url" in refs else self.url,
            password=None if "password" in refs else self.password,
        )

    def with_secrets(self) -> Self:
        """The copy :meth:`without_secrets` made, its secrets read here (a worker's environment or files)."""
        values: dict[str, str] = {}
        for name, kind, ref in self.secret_refs:
            if kind == "env":
                value = os.environ.get(ref)
                if not value:
                    raise ConfigError(
                        f"environment variable {ref} (source.{name}_env) is not set on this worker "
                        f"({socket.gethostname()}); every worker needs the source's credentials"
                    )
            else:
                try:
                    value = Path(ref).read_text(encoding="utf-8").strip()
                except OSError as e:
                    raise ConfigError(
                        f"source.url_file {ref} cannot be read on this worker ({socket.gethostname()}): "
                        f"{e.strerror or e}"
                    ) from None
            values[name] = value
        return dataclasses.replace(
            self, url=values.get("url", self.url), password=values.get("password", self.password)
        )

    def identity(self) -> str:
        """``kind://host:port/database`` as a connection resolves it (URL, fields, environment); no credentials."""
        target = self.target()
        return f"{self.kind}://{target['host'].lower()}:{target['port']}/{target['database'] or ''}"

    def target(self) -> dict[str, Any]:
        """Where connections go, resolved without connecting (``rivet._native.connection_target``)."""
        from rivet._native import connection_target

        return connection_target(self.kind, self.target_args())

    def password_safe(self) -> bool:
        """Whether any client may send this source's password: none is given, or TLS proves the server."""
        target = self.target()
        return (
            not target["has_password"]
            or target["tls_verified"]
            or target["unix_socket"]
            or self.allow_unverified_password
        )

    def session(self) -> Session:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet import _native

        session: Session = getattr(_native, self.session_type)(self.connect_args())
        self.warn_about_channel(session.channel)
        return session

    def channel(self) -> str:
        """How connections travel: ``plaintext``, ``tls-unverified``, ``tls-verified`` or ``unix-socket``."""
        return self.session().channel

    def warn_about_channel(self, channel: str) -> None:
        """Say once per process when connections are not encrypted, or reach an unproven server.

        Not for a server on this machine (loopback or a Unix socket), nor for a TLS mode the
        config chose itself (a tls block, or sslmode / ssl-mode in the URL): it knows.
        """
        key = self.redacted()
        if not WARN_ABOUT_CHANNEL or channel not in WEAK_CHANNELS or key in _warned or self._channel_chosen():
            return
        _warned.add(key)
        log.warning("the connection to %s %s", key, WEAK_CHANNELS[channel])

    def _channel_chosen(self) -> bool:
        """Whether the config chose how connections travel, or they stay on this machine."""
        url = self.url or ""
        if self.tls_mode is not None or any(k in url for k in ("sslmode=", "ssl-mode=", "ssl_mode=")):
            return True
        try:
            host = str(self.target()["host"]).lower()
        except Exception:  # noqa: BLE001 - an unreadable URL fails the connection itself, not this warning
            return False
        return host.startswith("/") or host.startswith(LOOPBACK)

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        decimal, text = self.split_overrides(overrides)
        return pa.schema(self.session().describe(query, decimal, text))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning, *, reconcile: bool = False) -> BatchReader:
        """Stream ``query`` whole, in one read-only snapshot."""
        decimal, text = self.split_overrides(overrides)
        options = scan_options(tuning, method=self.read_method, reconcile=reconcile)
        return self.session().scan(query, None, options, decimal, text)

    def primary_key(self, relation: str) -> list[str]:
        """The primary key columns of ``relation`` (quoted SQL), in key order; empty when it has none."""
        return [str(r[0]) for r in self.session().query(self.dialect.primary_key_query(relation)) if r[0]]

    def change_feed(self, tables: list[tuple[str, ...]], spec: ChangeSpec, export: str) -> ChangeFeed:
        """The changes of ``tables`` from the server's log, read once (``mode: cdc``)."""
        raise ConfigError(f"export '{export}': mode: cdc is not supported on {self.label}")

    def split_overrides(self, overrides: ColumnOverrides) -> tuple[dict[str, tuple[int, int]], list[str]]:
        """``columns:`` as the native reader takes them: decimal(p,s) entries, and text columns."""
        text = []
        for column, type_name in overrides.other.items():
            if type_name not in TEXT_TYPES:
                raise ConfigError(
                    f"columns: {column}: '{type_name}' is not an override for {self.label}; "
                    "use decimal(p,s) for decimal columns or text for any column (or cast in the query)"
                )
            text.append(column)
        return overrides.decimal, text

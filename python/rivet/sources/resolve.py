"""Turning ``source:`` settings into a connected-ready source, reading secrets from env and files."""

from __future__ import annotations

import os
from pathlib import Path

from rivet.config.connection import FileSourceConfig, ServerSourceConfig, SourceConfig, SshConfig
from rivet.errors import ConfigError
from rivet.sources.mysql.source import MysqlSource
from rivet.sources.postgres.source import PostgresSource
from rivet.sources.sqlite.source import SqliteSource
from rivet.sources.tunnel import SshSettings

# Every concrete source; planning code narrows on ``kind``.
AnySource = PostgresSource | MysqlSource | SqliteSource


def _env(name: str, key: str) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        raise ConfigError(f"source.{key}: environment variable {name} is not set")
    return value


def _url(source: ServerSourceConfig | FileSourceConfig, base_dir: Path) -> str | None:
    if source.url is not None:
        return source.url
    if source.url_env is not None:
        return _env(source.url_env, "url_env")
    if source.url_file is not None:
        path = Path(source.url_file)
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"source.url_file: cannot read {path}: {e.strerror or e}") from None
    return None


def resolve_source(source: SourceConfig, base_dir: Path) -> AnySource:
    """Build the source; relative file paths are relative to ``base_dir``."""
    url = _url(source, base_dir)
    if isinstance(source, FileSourceConfig):
        path = source.path
        if url is not None:
            # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
            if not url.startswith("sqlite:///"):
                raise ConfigError(f"source.url: a sqlite URL looks like sqlite:///file.db, got '{url}'")
            path = url.removeprefix("sqlite:///")
        assert path is not None
        resolved = Path(path) if Path(path).is_absolute() else base_dir / path
        if not resolved.is_file():
            raise ConfigError(f"source.path: SQLite database {resolved} does not exist")
        return SqliteSource(path=str(resolved))
    password = source.password.get_secret_value() if source.password is not None else None
    refs: list[tuple[str, str, str]] = []
    if source.password_env is not None:
        password = _env(source.password_env, "password_env")
        refs.append(("password", "env", source.password_env))
    if source.url is None and source.url_env is not None:
        refs.append(("url", "env", source.url_env))
    elif source.url is None and source.url_file is not None:
        url_file = Path(source.url_file)
        refs.append(("url", "file", str(url_file if url_file.is_absolute() else base_dir / url_file)))
    tls = source.tls
    ca_file = None
    if tls is not None and tls.ca_file is not None:
        ca = Path(tls.ca_file)
        ca_file = str(ca if ca.is_absolute() else base_dir / ca)
    network = MysqlSource if source.type == "mysql" else PostgresSource
    return network(
        url=url,
        host=source.host,
        port=source.port,
        user=source.user,
        password=password,
        database=source.database,
        tls_mode=tls.mode if tls else None,
        ca_file=ca_file,
        accept_invalid_certs=tls.accept_invalid_certs if tls else False,
        accept_invalid_hostnames=tls.accept_invalid_hostnames if tls else False,
        read_timeout_s=source.read_timeout_s,
        allow_unverified_password=tls.allow_unverified_password if tls else False,
        channel_binding=tls.channel_binding if tls else None,
        secret_refs=tuple(refs),
        ssh=_ssh(source.ssh, base_dir),
    )


def _ssh(ssh: SshConfig | None, base_dir: Path) -> SshSettings | None:
    """``source.ssh`` with its paths resolved (``~`` and relative to the config); keys stay where they are."""
    if ssh is None:
        return None

    def path(p: str) -> str:
        expanded = Path(p).expanduser()
        return str(expanded if expanded.is_absolute() else base_dir / expanded)

    return SshSettings(
        host=ssh.host,
        port=ssh.port,
        user=ssh.user,
        key_file=path(ssh.key_file) if ssh.key_file is not None else None,
        key_env=ssh.key_env,
        passphrase_env=ssh.passphrase_env,
        known_hosts=path(ssh.known_hosts),
        accept_new_host_key=ssh.accept_new_host_key,
    )

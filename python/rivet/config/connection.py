"""The ``source:`` and ``destination:`` blocks of rivet.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator

from rivet.config.common import Bool, StrictModel, TuningConfig, _reject_misplaced_tuning
from rivet.core.redact import HIDDEN, redact_url


class TlsConfig(StrictModel):
    """``source.tls``: encryption and certificate checks."""

    mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    ca_file: str | None = None
    accept_invalid_certs: Bool = False
    accept_invalid_hostnames: Bool = False
    # Send a password in clear text, or as a replayable MD5 hash, over a connection whose
    # server is not proven by a verified certificate.
    allow_unverified_password: Bool = False
    # SCRAM channel binding (PostgreSQL), libpq's names.
    channel_binding: Literal["prefer", "require", "disable"] | None = None


class SshConfig(StrictModel):
    """``source.ssh``: reach the database through an SSH bastion (a local port forwarded through it)."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: Annotated[str, Field(min_length=1)]
    # The private key: a file, or an environment variable holding the key itself.
    key_file: str | None = None
    key_env: str | None = None
    passphrase_env: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    # Trust a bastion missing from known_hosts on first use (and add it there).
    accept_new_host_key: Bool = False

    @model_validator(mode="after")
    def _one_key(self) -> SshConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("set exactly one of key_file or key_env (an environment variable holding the key)")
        return self


class _SourceBase(StrictModel):
    """What every ``source`` takes, whichever database it is."""

    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None
    tuning: TuningConfig | None = None
    # Which reader scans: rivet's own, connectorx, or connectorx only where it is exact.
    engine: Literal["auto", "native", "connectorx"] = "native"
    # A label for people (production, replica, staging); shown by `rivet plan`, changes nothing.
    environment: Annotated[str, Field(min_length=1)] | None = None

    def __repr_args__(self) -> Any:
        # A URL may hold a password: reprs (and tracebacks) show it redacted.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _tuning_placement(cls, data: Any) -> Any:
        return _reject_misplaced_tuning(data, "source.tuning")

    def _urls(self) -> list[str]:
        urls = [k for k in ("url", "url_env", "url_file") if getattr(self, k) is not None]
        if len(urls) > 1:
            raise ValueError("specify exactly one of url, url_env or url_file")
        return urls


class ServerSourceConfig(_SourceBase):
    """``source`` for a database server (PostgreSQL, MySQL, MariaDB): a URL or host, user and database."""

    type: Literal["postgres", "mysql"]
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    database: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    # The longest the server may send nothing while rivet waits (default: statement timeout + 30 s).
    read_timeout_s: Annotated[float, Field(gt=0)] | None = None
    ssh: SshConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" in data:
            raise ValueError("path applies only to a sqlite source; use url or host/user/database")
        return data

    @model_validator(mode="after")
    def _connection_style(self) -> ServerSourceConfig:
        urls = self._urls()
        structured = [k for k in ("host", "user", "database", "port") if getattr(self, k) is not None]
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if urls and (structured or self.password or self.password_env):
            raise ValueError(
                "use either a URL (url, url_env, url_file) or structured fields "
                "(host, port, user, database, password), not both"
            )
        if not urls:
            if not structured:
                raise ValueError("no connection given: set url, url_env or url_file, or host, user and database")
            for required in ("host", "user", "database"):
                if getattr(self, required) is None:
                    raise ValueError(f"structured config requires '{required}'")
        return self


class FileSourceConfig(_SourceBase):
    """``source`` for a database in a file (SQLite): a path, or a ``sqlite:///`` URL."""

    type: Literal["sqlite"]
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_server(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = data.get("type")
            if "tls" in data:
                raise ValueError(f"tls does not apply to a {kind} source")
            if any(k in data for k in ("host", "port", "user", "database", "password", "password_env")):
                raise ValueError(f"a {kind} source takes path (or url: sqlite:///file.db), not host/user/database")
        return data

    @model_validator(mode="after")
    def _one_location(self) -> FileSourceConfig:
        if bool(self._urls()) == (self.path is not None):
            raise ValueError(f"a {self.type} source needs exactly one of path, url, url_env or url_file")
        return self


# ``source``: where rows come from; its ``type`` says which keys it takes.
SourceConfig = Annotated[ServerSourceConfig | FileSourceConfig, Field(discriminator="type")]


class DestinationConfig(StrictModel):
    """``destination``: where files go. ``{date}``, ``{export}`` and ``{table}`` expand in paths."""

    type: Literal["local", "s3", "gcs", "azure", "memory", "stdout"] | None = None
    url: str | None = None
    path: str | None = None
    bucket: str | None = None
    container: str | None = None
    prefix: str | None = None
    region: str | None = None
    endpoint: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    session_token_env: str | None = None
    aws_profile: str | None = None
    allow_anonymous: Bool = False
    credentials_file: str | None = None
    account_name: str | None = None
    account_key_env: str | None = None
    sas_token_env: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        # Storage options carry keys and tokens; a URL may carry a signature.
        for name, value in super().__repr_args__():
            if name == "storage_options" and value:
                yield name, dict.fromkeys(value, HIDDEN)
            elif name == "url" and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @model_validator(mode="after")
    def _shape(self) -> DestinationConfig:
        if self.url is not None:
            if self.type is not None or self.path is not None or self.bucket is not None:
                raise ValueError("give url alone, or type with path/bucket, not both")
            return self
        kind = self.type or ("local" if self.path is not None else None)
        if kind == "stdout":
            extra = sorted(k for k in self.model_fields_set if k != "type")
            if extra:
                raise ValueError(f"a stdout destination takes no other keys (got {', '.join(extra)})")
            return self
        if kind is None:
            raise ValueError("set url, path, or type with its keys (e.g. type: s3, bucket: ...)")
        if kind in ("s3", "gcs") and not self.bucket:
            raise ValueError(f"a {kind} destination requires 'bucket'")
        if kind == "azure" and not (self.container or self.bucket):
            raise ValueError("an azure destination requires 'container' (or 'bucket', as the original tool calls it)")
        if kind == "azure" and self.container and self.bucket and self.container != self.bucket:
            raise ValueError("container and bucket name the same azure container; give one of them")
        if self.sas_token_env and kind != "azure":
            raise ValueError("sas_token_env applies to an azure destination")
        if self.sas_token_env and self.account_key_env:
            raise ValueError("set account_key_env or sas_token_env, not both")
        if (self.access_key_env is None) != (self.secret_key_env is None):
            raise ValueError("set both access_key_env and secret_key_env, or neither")
        if self.allow_anonymous and self.credentials_file:
            raise ValueError("allow_anonymous and credentials_file exclude each other")
        if self.credentials_file and not Path(self.credentials_file).is_file():
            raise ValueError(f"credentials_file '{self.credentials_file}' does not exist")
        return self

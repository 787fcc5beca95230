"""Destinations through fsspec, and the commit protocol that keeps half-written output invisible.

Local output is staged beside its final name and renamed into place (atomic);
object-store output is staged in a local temp directory and uploaded as whole
objects, which become visible only when complete. ``manifest.json`` and then
``_SUCCESS`` are written last.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rivet.config.models import DestinationConfig
from rivet.errors import ConfigError, DestinationError

MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class DestinationSpec:
    """An fsspec URL and its storage options (secrets are never shown)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"DestinationSpec({self.url!r})"


def _placeholders(text: str, export: str, now: dt.datetime) -> str:
    return text.replace("{date}", now.strftime("%Y-%m-%d")).replace("{export}", export).replace("{table}", export)


def _env(name: str, key: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"destination.{key}: environment variable {name} is not set")
    return value


def _is_url(text: str) -> bool:
    return "://" in text


def resolve_destination(
    dest: str | DestinationConfig, base_dir: Path, export: str, now: dt.datetime
) -> DestinationSpec:
    """The URL and storage options for an export's destination; local paths are relative to ``base_dir``."""
    if isinstance(dest, str):
        dest = DestinationConfig(url=dest) if _is_url(dest) else DestinationConfig(path=dest)
    options: dict[str, Any] = dict(dest.storage_options)
    if dest.url is not None:
        return DestinationSpec(_placeholders(dest.url, export, now), options)
    kind = dest.type or "local"
    prefix = _placeholders((dest.prefix or "").strip("/"), export, now)
    if kind == "local":
        raw = _placeholders(dest.path or dest.prefix or ".", export, now)
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else base_dir / path
        return DestinationSpec(str(path), options)
    if kind == "memory":
        return DestinationSpec("memory://" + _placeholders((dest.path or "").lstrip("/"), export, now), options)
    if kind == "s3":
        if dest.access_key_env:
            options["key"] = _env(dest.access_key_env, "access_key_env")
            options["secret"] = _env(dest.secret_key_env or "", "secret_key_env")
        if dest.session_token_env:
            options["token"] = _env(dest.session_token_env, "session_token_env")
        if dest.endpoint:
            options["endpoint_url"] = dest.endpoint
        if dest.region:
            options.setdefault("client_kwargs", {})["region_name"] = dest.region
        if dest.aws_profile:
            options["profile"] = dest.aws_profile
        if dest.allow_anonymous:
            options["anon"] = True
        return DestinationSpec(f"s3://{dest.bucket}/{prefix}".rstrip("/"), options)
    if kind == "gcs":
        if dest.credentials_file:
            options["token"] = dest.credentials_file
        elif dest.allow_anonymous:
            options["token"] = "anon"
        if dest.endpoint:
            options["endpoint_url"] = dest.endpoint
        return DestinationSpec(f"gs://{dest.bucket}/{prefix}".rstrip("/"), options)
    # azure
    if dest.account_name:
        options["account_name"] = dest.account_name
    if dest.account_key_env:
        options["account_key"] = _env(dest.account_key_env, "account_key_env")
    return DestinationSpec(f"abfs://{dest.container}/{prefix}".rstrip("/"), options)


class Destination:
    """One export's output location during a run."""

    def __init__(self, spec: DestinationSpec) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.spec = spec
        try:
            self.fs, self.root = fsspec.core.url_to_fs(spec.url, **spec.storage_options)
        except (ImportError, ValueError) as e:
            raise DestinationError(f"destination {spec.url}: {e}") from None
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = self.root.rstrip("/")
        self._tmpdir: Path | None = None

    def url_of(self, name: str) -> str:
        """Full URL of a file at the destination."""
        if self.is_local:
            return str(Path(self.root) / name)
        return self.fs.unstrip_protocol(f"{self.root}/{name}")

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def prepare(self) -> None:
        """Create the location and withdraw an old ``_SUCCESS`` so a failed run never looks complete."""
        try:
            if self.is_local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            elif self._tmpdir is None:
                # Made now, not lazily, because worker threads stage into it concurrently.
                self._tmpdir = Path(tempfile.mkdtemp(prefix="rivet-"))
            if self.fs.exists(self._path(SUCCESS)):
                self.fs.rm(self._path(SUCCESS))
        except OSError as e:
            raise DestinationError(f"destination {self.spec.url}: {e}") from e

    def staging_path(self, run_id: str, n: int) -> Path:
        """Where part ``n`` is written before it is committed."""
        if self.is_local:
            return Path(self.root) / f".rivet-{run_id}-{n}.tmp"
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="rivet-"))
        return self._tmpdir / f"part-{n}"

    def commit(self, staged: Path, name: str) -> str:
        """Make a staged part visible under ``name``; returns its URL."""
        target = self._path(name)
        try:
            if self.is_local:
                os.replace(staged, target)
            else:
                self.fs.put_file(str(staged), target)
                staged.unlink()
        except OSError as e:
            raise DestinationError(f"committing {self.url_of(name)} failed: {e}") from e
        return self.url_of(name)

    def write_file(self, name: str, data: bytes) -> str:
        """Write a small file whole (temp + rename locally, one PUT on object stores)."""
        target = self._path(name)
        try:
            if self.is_local:
                tmp = Path(self.root) / f".{name}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            else:
                self.fs.pipe_file(target, data)
        except OSError as e:
            raise DestinationError(f"writing {self.url_of(name)} failed: {e}") from e
        return self.url_of(name)

    def remove(self, names: list[str]) -> None:
        """Best-effort removal of committed files after a failure."""
        for name in names:
            try:
                self.fs.rm(self._path(name))
            except (OSError, FileNotFoundError):
                pass

    def cleanup(self) -> None:
        """Remove the local staging directory of a remote destination."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

"""Destinations through fsspec, and the commit protocol that keeps half-written output invisible.

Local output is staged beside its final name and renamed into place (atomic);
object-store output is staged in a local temp directory and uploaded as whole
objects, which become visible only when complete. ``manifest.json`` and then
``_SUCCESS`` are written last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rivet.config.connection import DestinationConfig
from rivet.config.destination import STDOUT_URL, destination_config, destination_url
from rivet.core.redact import redact_text, redact_url
from rivet.errors import ConfigError, DestinationError
from rivet.storage import staging

log = logging.getLogger("rivet")

MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
# Protocols whose writes become visible only complete: a local rename, or a whole-object PUT
# (S3 multipart uploads too appear only when completed). sftp, ftp, smb and the like would
# show a half-written file under its final name, so they are refused.
ATOMIC_PROTOCOLS = {"file", "local", "memory", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"}
# Without a lease to tell, staged parts older than this are taken for leftovers of a killed run.
STALE_STAGING_S = 86400.0


@dataclass(frozen=True)
class DestinationSpec:
    """An fsspec URL and its storage options (secrets are never shown).

    ``owner`` is set when several exports share the folder: the export's manifest and
    marker then carry its name (``<owner>.manifest.json``, ``_SUCCESS.<owner>``).
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    owner: str | None = None
    # Storage options read from the environment (option, variable), so another machine reads them itself.
    secret_refs: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def without_secrets(self) -> DestinationSpec:
        """A copy that carries no secret, only the variables to read each from (for tasks on other machines).

        Raises ConfigError for a secret written in the config's storage_options.
        """
        refs = dict(self.secret_refs)
        literal = sorted(k for k, v in self.storage_options.items() if k not in refs and is_secret_option(k, v))
        if literal:
            raise ConfigError(
                f"destination {self.shown}: storage_options {', '.join(literal)} written in the config: on a "
                "cluster each worker reads credentials from its own environment (access_key_env, "
                "secret_key_env, session_token_env, account_key_env, sas_token_env) or its own credentials file"
            )
        kept = {k: v for k, v in self.storage_options.items() if k not in refs}
        return dataclasses.replace(self, storage_options=kept)

    def with_secrets(self) -> DestinationSpec:
        """The copy :meth:`without_secrets` made, its secrets read from this machine's environment."""
        options = dict(self.storage_options)
        for option, variable in self.secret_refs:
            options[option] = os.environ.get(variable) or _missing_on_worker(variable, self.shown)
        return dataclasses.replace(self, storage_options=options)

    def child(self, folder: str) -> DestinationSpec:
        """The spec of ``folder`` inside this destination (a change capture's ``snapshot/``)."""
        return dataclasses.replace(self, url=f"{self.url.rstrip('/')}/{folder}")

    @property
    def manifest_name(self) -> str:
        """The name of the cumulative manifest."""
        return f"{self.owner}.{MANIFEST}" if self.owner else MANIFEST

    @property
    def success_name(self) -> str:
        """The name of the completeness marker."""
        return f"{SUCCESS}.{self.owner}" if self.owner else SUCCESS

    def __repr__(self) -> str:
        return f"DestinationSpec({self.shown!r})"

    @property
    def shown(self) -> str:
        """The URL as messages and artifacts show it (tokens and passwords hidden)."""
        return redact_url(self.url)


def _env(name: str, key: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"destination.{key}: environment variable {name} is not set")
    return value


# Storage options whose values are credentials (a GCS token may also name a credentials file).
SECRET_OPTIONS = re.compile(r"key|secret|token|password|credential|connection_string|sas", re.IGNORECASE)


def is_secret_option(name: str, value: Any) -> bool:
    """Whether a storage option holds a credential (not a file that holds one, nor ``anon``)."""
    if not SECRET_OPTIONS.search(name) or value in (None, "", "anon", False, True):
        return False
    return not (name == "token" and isinstance(value, str) and Path(value).expanduser().is_file())


def _missing_on_worker(variable: str, shown: str) -> str:
    import socket

    raise ConfigError(
        f"environment variable {variable} is not set on this worker ({socket.gethostname()}); every worker "
        f"needs the credentials of destination {shown}"
    )


def resolve_destination(
    dest: str | DestinationConfig, base_dir: Path, export: str, now: dt.datetime, *, credentials: bool = True
) -> DestinationSpec:
    """The URL and storage options for an export's destination; local paths are relative to ``base_dir``.

    ``credentials`` False: without reading keys from the environment (config checks).
    """
    dest = destination_config(dest)
    url = destination_url(dest, base_dir, export, now)
    options: dict[str, Any] = dict(dest.storage_options)
    kind = dest.type or "local"
    if dest.url is not None or kind not in ("s3", "gcs", "azure"):
        return DestinationSpec(url, options)
    refs: list[tuple[str, str]] = []

    def secret(option: str, key: str, variable: str | None) -> None:
        if credentials and variable is not None:
            options[option] = _env(variable, key)
            refs.append((option, variable))

    if kind == "s3":
        if dest.access_key_env:
            secret("key", "access_key_env", dest.access_key_env)
            secret("secret", "secret_key_env", dest.secret_key_env or "")
        secret("token", "session_token_env", dest.session_token_env or None)
        if dest.endpoint:
            options["endpoint_url"] = dest.endpoint
        if dest.region:
            options.setdefault("client_kwargs", {})["region_name"] = dest.region
        if dest.aws_profile:
            options["profile"] = dest.aws_profile
        if dest.allow_anonymous:
            options["anon"] = True
    elif kind == "gcs":
        if dest.credentials_file:
            options["token"] = dest.credentials_file
        elif dest.allow_anonymous:
            options["token"] = "anon"
        if dest.endpoint:
            options["endpoint_url"] = dest.endpoint
            # gcsfs's experimental gRPC layer asks the endpoint for the bucket's layout over TLS and
            # waits a minute on a GCS-compatible server that does not speak it: use plain HTTP.
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    else:
        if dest.account_name:
            options["account_name"] = dest.account_name
        secret("account_key", "account_key_env", dest.account_key_env or None)
        secret("sas_token", "sas_token_env", dest.sas_token_env or None)
    return DestinationSpec(url, options, secret_refs=tuple(refs))


def check_atomic(url: str) -> None:
    """Refuse a protocol that would show a half-written file under its final name."""
    import fsspec

    protocol = fsspec.core.split_protocol(url.split("::")[-1])[0] or "file"
    try:
        known = fsspec.get_filesystem_class(protocol).protocol
    except (ImportError, ValueError):
        known = (protocol,)
    names = known if isinstance(known, tuple) else (known,)
    if not ATOMIC_PROTOCOLS.intersection(names):
        raise ConfigError(
            f"destination {redact_url(url)}: {protocol}:// cannot make a file visible only once it is complete; "
            "write to local disk or an object store (s3, gcs, azure) instead"
        )


def _protocols(fs: Any) -> tuple[str, ...]:
    names = fs.protocol
    return names if isinstance(names, tuple) else (names,)


class Destination:
    """One export's output location during a run."""

    def __init__(self, spec: DestinationSpec) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.spec = spec
        check_atomic(spec.url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(spec.url, **spec.storage_options)
        except (ImportError, ValueError) as e:
            raise DestinationError(f"destination {spec.shown}: {redact_text(str(e))}") from None
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = self.root.rstrip("/")
        self._tmpdir: Path | None = None

    def url_of(self, name: str) -> str:
        """Full URL of a file at the destination."""
        self._inside(name)
        if self.is_local:
            return str(Path(self.root) / name)
        return self.fs.unstrip_protocol(f"{self.root}/{name}")

    def _path(self, name: str) -> str:
        self._inside(name)
        return f"{self.root}/{name}" if self.root else name

    def _inside(self, name: str) -> None:
        """Refuse a name that would reach outside the destination (names also come from manifests and state)."""
        parts = name.split("/")
        if not name or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
            raise DestinationError(f"{name!r} is not the name of a file inside {self.spec.shown}; refused")

    def prepare(self, export: str | None = None, *, exclusive: bool = False, spared_run: str | None = None) -> None:
        """Create the location for staging; with ``export``, remove parts its killed runs left staged.

        ``exclusive``: the caller holds the export's lease, so every part staged for the
        export before now belongs to a dead run, but ``spared_run`` (a run whose lease was
        taken over by time alone, which may still be alive); otherwise only day-old ones
        are removed.
        """
        try:
            if self.is_local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
                if export is not None:
                    cutoff = time.time() if exclusive else time.time() - STALE_STAGING_S
                    self._remove_stale_staging(export, cutoff, spared_run)
            else:
                self._check_bucket()
                if self._tmpdir is None:
                    # Made now, not lazily, because worker threads stage into it concurrently.
                    self._tmpdir = Path(tempfile.mkdtemp(prefix="rivet-"))
        except OSError as e:
            raise DestinationError(f"destination {self.spec.shown}: {e}") from e

    def _check_bucket(self) -> None:
        """Refuse an object store whose bucket (or container) is not there before any row is read."""
        bucket = self.root.split("/", 1)[0]
        if not bucket or "memory" in _protocols(self.fs):
            return
        if not self.fs.exists(bucket):
            raise DestinationError(
                f"destination {self.spec.shown}: the bucket or container {bucket} does not exist (or these "
                "credentials cannot see it); create it first, nothing was read"
            )

    def withdraw_success(self) -> None:
        """Remove the old ``_SUCCESS`` before the first part of a run becomes visible."""
        try:
            if self.fs.exists(self._path(self.spec.success_name)):
                self.fs.rm(self._path(self.spec.success_name))
        except OSError as e:
            raise DestinationError(f"destination {self.spec.shown}: {e}") from e

    def _remove_stale_staging(self, export: str, cutoff: float, spared_run: str | None = None) -> None:
        own = re.compile(rf"^\.rivet-{re.escape(export)}_\d{{8}}T\d{{6}}\.\d{{3}}Z-.*\.tmp$")
        spared = f".rivet-{spared_run}-" if spared_run else None
        for path in Path(self.root).iterdir():
            try:
                if spared is not None and path.name.startswith(spared):
                    continue
                if own.match(path.name) and path.lstat().st_mtime <= cutoff:
                    path.unlink()
                    log.info("removed %s, a part staged by a run that was killed", path)
            except FileNotFoundError:
                pass

    def staging_path(self, run_id: str, n: int) -> Path:
        """Where part ``n`` is written before it is committed: a new file with a random name.

        The file is created exclusively and never through a symbolic link, so nothing
        planted at the destination can redirect the write.
        """
        token = secrets.token_hex(4)
        if self.is_local:
            path = Path(self.root) / f".rivet-{run_id}-{n}-{token}.tmp"
        else:
            if self._tmpdir is None:
                self._tmpdir = Path(tempfile.mkdtemp(prefix="rivet-"))
            path = self._tmpdir / f"part-{run_id}-{n}-{token}"
        try:
            # Written and published through the descriptor that created it: a link swapped in is never followed.
            return staging.create(path)
        except OSError as e:
            raise DestinationError(f"cannot create the staging file {path}: {e}") from e

    def commit(self, staged: Path, name: str) -> str:
        """Make a staged part visible under ``name``; returns its URL."""
        target = self._path(name)
        try:
            if self.is_local:
                if "/" in name:  # a partition's folder
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging.release(staged), target)
                self._sync_directory(target)
            else:
                self.fs.put_file(staging.handle(staged), target)
                staging.remove(staged)
        except OSError as e:
            raise DestinationError(f"committing {self.url_of(name)} failed: {e}") from e
        return self.url_of(name)

    @staticmethod
    def _sync_directory(path: str | Path) -> None:
        """Make a rename durable: fsync the directory that holds ``path``."""
        fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_file(self, name: str) -> bytes | None:
        """A small file's bytes, or None when it does not exist."""
        try:
            with self.fs.open(self._path(name), "rb") as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DestinationError(f"reading {self.url_of(name)} failed: {e}") from e

    def list_names(self, *, recursive: bool = False) -> list[str]:
        """The names of the files directly in the destination (none when it does not exist).

        ``recursive``: also those in its folders, as ``folder/name`` (partitioned output).
        """
        try:
            # What this process wrote may not be in fsspec's listing cache yet (adlfs keeps one).
            self.fs.invalidate_cache(self.root or None)
            if recursive:
                found = self.fs.find(self.root or "", detail=True)
                entries = [e for e in found.values() if e.get("type") == "file"]
            else:
                entries = [e for e in self.fs.ls(self.root or "", detail=True) if e.get("type") == "file"]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise DestinationError(f"listing {self.spec.shown} failed: {e}") from e
        names = []
        for entry in entries:
            path = str(entry["name"]).rstrip("/")
            inside = recursive and self.root and path.startswith(self.root + "/")
            names.append(path[len(self.root) + 1 :] if inside else path.rsplit("/", 1)[-1])
        return sorted(names)

    def size_of(self, name: str) -> int | None:
        """The size of a file, or None when it does not exist."""
        try:
            return int(self.fs.info(self._path(name))["size"])
        except FileNotFoundError:
            return None

    def open(self, name: str) -> Any:
        """A binary file object for reading ``name``."""
        return self.fs.open(self._path(name), "rb")

    def write_file(self, name: str, data: bytes) -> str:
        """Write a small file whole (temp + rename locally, one PUT on object stores)."""
        target = self._path(name)
        try:
            if self.is_local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(target).parent / f".{Path(name).name}.{secrets.token_hex(4)}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
                self._sync_directory(target)
            else:
                self.fs.pipe_file(target, data)
        except OSError as e:
            raise DestinationError(f"writing {self.url_of(name)} failed: {e}") from e
        return self.url_of(name)

    def remove(self, names: list[str]) -> None:
        """Best-effort removal of files (committed parts after a failure, superseded parts)."""
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


def open_destination(spec: DestinationSpec) -> Destination:
    """The destination of ``spec``: fsspec storage, or standard output."""
    return StdoutDestination(spec) if spec.url == STDOUT_URL else Destination(spec)


class StdoutDestination(Destination):
    """Standard output: the run's one file is staged locally and streamed out once it is complete.

    There is no folder, so no manifest and no ``_SUCCESS``; the run summary goes to stderr.
    """

    def __init__(self, spec: DestinationSpec) -> None:
        self.spec = spec
        self.is_local = False
        self.root = ""
        self._tmpdir = None

    def url_of(self, name: str) -> str:
        """Every part is ``stdout``."""
        return "stdout"

    def prepare(self, export: str | None = None, *, exclusive: bool = False, spared_run: str | None = None) -> None:
        """A local directory to stage the file in."""
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="rivet-"))

    def withdraw_success(self) -> None:
        """Nothing to withdraw."""

    def commit(self, staged: Path, name: str) -> str:
        """Stream the complete file to standard output."""
        try:
            with open(staging.handle(staged), "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        except OSError as e:
            raise DestinationError(f"writing to stdout failed: {e}") from e
        finally:
            staging.remove(staged)
        return "stdout"

    def read_file(self, name: str) -> bytes | None:
        """Nothing was written before."""
        return None

    def list_names(self, *, recursive: bool = False) -> list[str]:
        """No files."""
        return []

    def size_of(self, name: str) -> int | None:
        """No files."""
        return None

    def open(self, name: str) -> Any:
        """Nothing can be read back from stdout."""
        raise DestinationError("a file written to stdout cannot be read back")

    def write_file(self, name: str, data: bytes) -> str:
        """Manifests and markers have nowhere to go."""
        return "stdout"

    def remove(self, names: list[str]) -> None:
        """What went out cannot be taken back."""

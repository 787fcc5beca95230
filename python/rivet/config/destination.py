"""Where an export's destination folder is, read from its config: placeholders and kinds, no storage."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from rivet.config.connection import DestinationConfig


def destination_config(dest: str | DestinationConfig) -> DestinationConfig:
    """A destination written as a plain string (a URL or a local path) as its full config."""
    if isinstance(dest, str):
        return DestinationConfig(url=dest) if "://" in dest else DestinationConfig(path=dest)
    return dest


def placeholders(text: str, export: str, now: dt.datetime) -> str:
    """``{date}``, ``{export}`` and ``{table}`` filled in; a trailing ``{partition}`` dropped."""
    # A trailing {partition} marks where partition_by's folders go: the destination is the folder above.
    text = re.sub(r"/?\{partition\}/?$", "", text)
    return text.replace("{date}", now.strftime("%Y-%m-%d")).replace("{export}", export).replace("{table}", export)


def destination_url(dest: str | DestinationConfig, base_dir: Path, export: str, now: dt.datetime) -> str:
    """The URL of an export's destination folder; local paths are relative to ``base_dir``."""
    dest = destination_config(dest)
    if dest.url is not None:
        return placeholders(dest.url, export, now)
    kind = dest.type or "local"
    prefix = placeholders((dest.prefix or "").strip("/"), export, now)
    if kind == "local":
        path = Path(placeholders(dest.path or dest.prefix or ".", export, now)).expanduser()
        return str(path if path.is_absolute() else base_dir / path)
    if kind == "stdout":
        return STDOUT_URL
    if kind == "memory":
        return "memory://" + placeholders((dest.path or "").lstrip("/"), export, now)
    scheme = {"s3": "s3", "gcs": "gs"}.get(kind, "abfs")
    bucket = dest.bucket if kind in ("s3", "gcs") else (dest.container or dest.bucket)
    return f"{scheme}://{bucket}/{prefix}".rstrip("/")


# A destination of type stdout: the file goes to the process's standard output.
STDOUT_URL = "stdout:"

"""The manifest written beside the parts of a successful run, and its ``_SUCCESS`` marker."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class CommittedPart:
    """A part visible at the destination."""

    name: str
    url: str
    rows: int
    bytes: int
    sha256: str


def schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    """Fields with their Arrow type and source metadata."""
    out = []
    for f in schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        out.append({"name": f.name, "arrow_type": str(f.type), "nullable": f.nullable, **meta})
    return out


def build_manifest(
    *,
    run_id: str,
    export: str,
    mode: str,
    started_at: str,
    finished_at: str,
    source: str,
    fmt: str,
    compression: str,
    schema: pa.Schema,
    parts: list[CommittedPart],
) -> bytes:
    """The manifest document (stable key order)."""
    doc = {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "export": export,
        "mode": mode,
        "status": "success",
        "started_at": started_at,
        "finished_at": finished_at,
        "source": source,
        "format": fmt,
        "compression": compression,
        "row_count": sum(p.rows for p in parts),
        "part_count": len(parts),
        "schema": schema_json(schema),
        "parts": [{"name": p.name, "rows": p.rows, "bytes": p.bytes, "sha256": p.sha256} for p in parts],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def success_marker(manifest: bytes) -> bytes:
    """``_SUCCESS`` holds the checksum of the manifest it vouches for."""
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}\n".encode()

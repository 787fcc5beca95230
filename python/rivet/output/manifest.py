"""The manifests of a destination, and its ``_SUCCESS`` marker.

``manifest.json`` lists every live part of the destination: the parts of the last
run for exports that replace their output (full, chunked), or of every run so far
for exports that append to it (incremental, time_window). Each run also leaves its
own manifest under ``_rivet/runs/<run_id>.json``. ``_SUCCESS`` holds the SHA-256 of
the ``manifest.json`` it vouches for and is written last.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rivet.errors import DestinationError

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_VERSION = 2
RUNS_DIR = "_rivet/runs"


@dataclass(frozen=True)
class CommittedPart:
    """A part visible at the destination, and the run that wrote it."""

    name: str
    url: str
    rows: int
    bytes: int
    sha256: str
    run_id: str | None = None
    chunks: tuple[int, ...] = ()  # the chunks of a chunked run that the part holds

    def record(self) -> dict[str, Any]:
        """The part as the state store keeps it."""
        return {**asdict(self), "chunks": list(self.chunks)}


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json``: its bytes (to restore it), run, schema and parts."""

    raw: bytes
    run_id: str
    schema: list[dict[str, Any]]
    parts: list[CommittedPart]


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
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A manifest document (stable key order): ``manifest.json`` or a run's own."""
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
        "parts": [_part_entry(p) for p in parts],
        **(extra or {}),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _part_entry(part: CommittedPart) -> dict[str, Any]:
    entry = {"name": part.name, "rows": part.rows, "bytes": part.bytes, "sha256": part.sha256, "run_id": part.run_id}
    if part.chunks:
        entry["chunks"] = list(part.chunks)
    return entry


def parse_manifest(raw: bytes, url_of: Any, where: str) -> Manifest:
    """A ``manifest.json`` read back; DestinationError naming ``where`` when it is not one."""
    try:
        doc = json.loads(raw)
        parts = [
            CommittedPart(
                p["name"],
                url_of(p["name"]),
                int(p["rows"]),
                int(p["bytes"]),
                p["sha256"],
                p.get("run_id"),
                tuple(int(c) for c in p.get("chunks", ())),
            )
            for p in doc["parts"]
        ]
        return Manifest(raw, str(doc["run_id"]), list(doc["schema"]), parts)
    except (ValueError, KeyError, TypeError) as e:
        raise DestinationError(f"{where} is not a rivet manifest ({type(e).__name__}: {e}); move it away") from None


def part_stem_of(export: str, name: str) -> str | None:
    """The run stem (``<export>_<YYYYMMDD_HHMMSS_mmm>``) of a part of ``export``, or None for other files.

    ``name`` may be in a partition folder (``col=value/<part>``).
    """
    base = name.rsplit("/", 1)[-1]
    # A chunk's part written on a cluster carries its attempt's token: _chunk00003_0badc0de.
    match = re.match(
        rf"^({re.escape(export)}_\d{{8}}_\d{{6}}_\d{{3}})(_chunk\d+(?:_[0-9a-f]{{8}})?)?(_part\d+)?\.", base
    )
    return match.group(1) if match else None


def part_from_record(record: dict[str, Any]) -> CommittedPart:
    """A part the state store kept (records written before parts listed chunks have none)."""
    return CommittedPart(**{**record, "chunks": tuple(record.get("chunks") or ())})


def success_marker(manifest: bytes) -> bytes:
    """``_SUCCESS`` holds the checksum of the manifest it vouches for."""
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}\n".encode()

"""Naming parts and publishing a finished run: parts, then manifest.json, then _SUCCESS."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from rivet.destinations import MANIFEST, SUCCESS, Destination
from rivet.manifest import CommittedPart, build_manifest, success_marker
from rivet.runinfo import iso, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.formats import StagedPart
    from rivet.plan import ExportPlan
    from rivet.results import ExportResult


def part_names(stem: str, extension: str, count: int) -> list[str]:
    """``stem.ext`` for one part, ``stem_part0.ext`` ... when rotated."""
    if count == 1:
        return [f"{stem}.{extension}"]
    return [f"{stem}_part{i}.{extension}" for i in range(count)]


def commit_parts(destination: Destination, staged: list[StagedPart], stem: str, extension: str) -> list[CommittedPart]:
    """Make staged parts visible under their final names; on failure remove what was made visible."""
    committed: list[CommittedPart] = []
    try:
        for part, name in zip(staged, part_names(stem, extension, len(staged)), strict=True):
            url = destination.commit(part.path, name)
            committed.append(CommittedPart(name, url, part.rows, part.bytes, part.sha256))
    except BaseException:
        destination.remove([p.name for p in committed])
        raise
    finally:
        for part in staged:
            part.path.unlink(missing_ok=True)
    return committed


def publish(
    plan: ExportPlan,
    destination: Destination,
    result: ExportResult,
    schema: pa.Schema,
    parts: list[CommittedPart],
    started: dt.datetime,
) -> None:
    """Write manifest.json, then _SUCCESS, and hand the parts to the result."""
    manifest = build_manifest(
        run_id=result.run_id,
        export=plan.name,
        mode=plan.mode,
        started_at=iso(started),
        finished_at=iso(utc_now()),
        source=plan.source.redacted(),
        fmt=plan.format.kind,
        compression=plan.format.compression,
        schema=schema,
        parts=parts,
    )
    result.manifest = destination.write_file(MANIFEST, manifest)
    destination.write_file(SUCCESS, success_marker(manifest))
    result.parts = parts

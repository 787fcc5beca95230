"""Checking written output against its manifest, without touching the source.

Used three ways: ``rivet run --validate`` reads a run's new parts back before the
run commits; ``--resume`` checks the parts of chunks done by an earlier process;
``rivet validate`` checks a whole destination: the manifest, ``_SUCCESS``, every
part (present, size, SHA-256, rows) and no stray part a glob would pick up; with
``format: delta`` or ``iceberg``, that the table lists exactly the manifest's parts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from rivet.errors import DestinationError, IntegrityError, RivetError
from rivet.output.manifest import CommittedPart, parse_manifest, success_marker
from rivet.output.tables.base import TableFormat
from rivet.storage.destinations import Destination

# Files a downstream reader would take for data.
DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".csv.zst")


def _sha256(destination: Destination, name: str) -> str:
    digest = hashlib.sha256()
    with destination.open(name) as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _rows(destination: Destination, name: str) -> int:
    """Rows in a part, from the Parquet footer or by parsing the CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with destination.open(name) as f:
        if name.endswith(".parquet"):
            return int(pq.ParquetFile(f).metadata.num_rows)
        codec = "gzip" if name.endswith(".gz") else "zstd" if name.endswith(".zst") else None
        stream = pa.input_stream(f, compression=codec)
        header = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=1 << 20))
        return sum(batch.num_rows for batch in header)


def part_problem(destination: Destination, part: CommittedPart, *, deep: bool = True) -> str | None:
    """What is wrong with a committed part (None: it is as recorded).

    Without ``deep`` only presence and size are checked.
    """
    size = destination.size_of(part.name)
    if size is None:
        return f"{part.name} is missing"
    if size != part.bytes:
        return f"{part.name} has {size} bytes, the manifest says {part.bytes}"
    if not deep:
        return None
    digest = _sha256(destination, part.name)
    if digest != part.sha256:
        return f"{part.name} has SHA-256 {digest[:16]}..., the manifest says {part.sha256[:16]}..."
    rows = _rows(destination, part.name)
    if rows != part.rows:
        return f"{part.name} holds {rows} row(s), the manifest says {part.rows}"
    return None


def check_parts(destination: Destination, parts: list[CommittedPart]) -> None:
    """Raise IntegrityError unless every part reads back as recorded (``--validate``)."""
    problems = [p for part in parts if (p := part_problem(destination, part)) is not None]
    if problems:
        raise IntegrityError(
            f"validation of {destination.spec.shown} failed: " + "; ".join(problems) + "; nothing was published"
        )


@dataclass(frozen=True)
class TableLog:
    """A table format's view of the destination: which parts its log lists (None: no table)."""

    format: TableFormat
    destination: Destination

    @property
    def kind(self) -> str:
        """The format as people name it."""
        return self.format.label

    def problems(self, in_manifest: set[str]) -> list[str]:
        """How the log and the manifest disagree."""
        try:
            in_log = self.format.listed_parts(self.destination)
        except ImportError:
            return [str(self.format.missing_library())]
        except RivetError as e:  # an unreachable catalog or store: this export's problem, not the others'
            return [str(e)]
        if in_log is None:
            return [f"no {self.kind} table: the last run's commit to it did not happen (the next run makes it)"]
        problems = [
            f"{n} is in the manifest but not in the {self.kind} table: its readers miss it (the next run commits it)"
            for n in sorted(in_manifest - in_log)
        ]
        problems += [f"{n} is in the {self.kind} table but not in the manifest" for n in sorted(in_log - in_manifest)]
        return problems


def validate_destination(
    destination: Destination, export: str, table_log: TableLog | None = None, *, deep: bool = True
) -> tuple[list[str], dict[str, int]]:
    """Every problem of a destination (empty when it is complete and exact), and its totals.

    Without ``deep`` no part is read: the manifest, ``_SUCCESS``, and each part's presence and size.
    """
    raw = destination.read_file(destination.spec.manifest_name)
    if raw is None:
        where = f"{destination.spec.manifest_name} at {destination.spec.shown}"
        return [f"no {where}: the export never completed there"], {}
    try:
        manifest = parse_manifest(raw, destination.url_of, destination.url_of(destination.spec.manifest_name))
    except DestinationError as e:
        return [str(e)], {}
    problems = []
    marker = destination.read_file(destination.spec.success_name)
    if marker is None:
        problems.append(f"no {destination.spec.success_name}: the last run did not complete")
    elif marker != success_marker(raw):
        problems.append(
            f"{destination.spec.success_name} does not vouch for {destination.spec.manifest_name} "
            "(its checksum differs)"
        )
    problems += [p for part in manifest.parts if (p := part_problem(destination, part, deep=deep)) is not None]
    listed = {p.name for p in manifest.parts}
    if table_log is not None:
        # Table readers read what the log lists; the previous version's parts stay for its readers.
        problems += table_log.problems(listed)
    else:
        own = re.compile(rf"^{re.escape(export)}_\d{{8}}_\d{{6}}_\d{{3}}")
        partitioned = any("/" in name for name in listed)  # parts in partition folders: look in every folder
        strays = [
            n
            for n in destination.list_names(recursive=partitioned)
            if n.endswith(DATA_SUFFIXES) and own.match(n.rsplit("/", 1)[-1]) and n not in listed
        ]
        problems += [f"{n} is not in the manifest, but a reader that globs would read it" for n in strays]
    totals = {"parts": len(manifest.parts), "rows": sum(p.rows for p in manifest.parts)}
    return problems, totals

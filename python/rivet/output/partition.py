"""Hive-style partitioned output: each row goes to the ``col=value/`` folder of its partition.

``partition_by`` names one or more columns; a date or timestamp column is bucketed
by ``partition_granularity`` (``day`` by default). A folder is named after its column
only when it holds the column's exact value (``region=eu``, a date by day); a bucket
of a timestamp is named ``<column>_<granularity>`` (``created_at_day=2024-01-31``),
because readers that take partition keys from folders (DuckDB does by default) would
otherwise replace each exact timestamp with its day. A NULL (or empty) value goes to
``__HIVE_DEFAULT_PARTITION__``, so no row is dropped.
Values are escaped as Hive escapes them (``/`` becomes ``%2F``), so a value can never
name a folder outside its own.

Two folders whose names differ only in letter case or Unicode normalisation (``EU`` and
``eu``) are one folder on case-insensitive storage (macOS, Windows, a synced copy): the
run fails naming both values before anything is published, as it does for a folder
segment longer than file systems allow (255 bytes).

One writer per partition, opened on the partition's first row. Memory stays bounded:
the row groups being filled share one budget (the fullest is written early when they
pass it), and at most ``MAX_OPEN_PARTITIONS`` files are open at once. Past that, the
file written last is finished (its partition gets another part if it comes back). For
rows sorted by partition that is the partition just left behind; for rows in random
partition order it costs one extra file per partition beyond the limit and batch,
where finishing the least recently written one would finish every file on every
batch (each batch meets the partitions in the same cycle).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rivet.errors import ConfigError, DataError
from rivet.output.base import PartTarget, PartWriter, StagedPart

HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
GRANULARITIES = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}
MAX_OPEN_PARTITIONS = 128

# The characters Hive escapes in a partition value (as %XX), besides control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"#%'*/:=?\\{}\[\]^]")


def hive_escape(value: str) -> str:
    """``value`` as one path segment, escaped as Hive does."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


@dataclass(frozen=True)
class Partitioning:
    """The columns the output is partitioned by, and the bucket of its date and timestamp columns."""

    columns: tuple[str, ...]
    granularity: str | None = None  # None: day

    def check(self, schema: pa.Schema, export: str) -> None:
        """Refuse a column that is missing or cannot name a folder exactly (ConfigError naming it)."""
        kinds = {}
        for name in self.columns:
            index = schema.get_field_index(name)
            if index < 0:
                raise ConfigError(f"export '{export}': partition_by column '{name}' is not in the output")
            kinds[name] = schema.field(index).type
        if self.granularity is not None and not any(_temporal(k) for k in kinds.values()):
            shown = ", ".join(f"'{n}' is {k}" for n, k in kinds.items())
            raise ConfigError(
                f"export '{export}': partition_granularity applies to date and timestamp columns; {shown}"
            )
        keys = {self.key(n, k) for n, k in kinds.items()}
        for key in sorted(keys - set(kinds)):
            if schema.get_field_index(key) >= 0:
                raise ConfigError(
                    f"export '{export}': the partition folders would be named {key}=..., which is also a column; "
                    "a reader taking keys from folders would replace its values (rename the column in the query)"
                )
        for name, kind in kinds.items():
            if not (
                _temporal(kind)
                or pa.types.is_integer(kind)
                or pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind)
            ):
                raise ConfigError(
                    f"export '{export}': partition_by column '{name}' is {kind}; partition by a date, timestamp, "
                    "integer, decimal, boolean or text column"
                )

    def key(self, name: str, kind: pa.DataType) -> str:
        """The folder key of column ``name``: the name itself when the folder holds its exact value."""
        granularity = self.granularity or "day"
        exact = not _temporal(kind) or (pa.types.is_date(kind) and granularity == "day")
        return name if exact else f"{name}_{granularity}"

    def folders(self, batch: pa.RecordBatch) -> tuple[pa.Array, list[str]]:
        """Each row's folder: a code per row, and the folder of each code (``region=eu/created_at_day=...``).

        Values are encoded column by column, and only the distinct ones are formatted.
        """
        codes: pa.Array | None = None
        sizes: list[int] = []
        segments: list[list[str]] = []
        for name in self.columns:
            column_codes, names = self._segments(batch.column(batch.schema.get_field_index(name)), name)
            codes = column_codes if codes is None else pc.add(pc.multiply(codes, len(names)), column_codes)
            sizes.append(len(names))
            segments.append(names)
        assert codes is not None
        if len(segments) == 1:
            return codes, segments[0]
        combined = codes.dictionary_encode()
        folders = []
        for code in combined.dictionary.to_pylist():
            parts = []
            for size, names in zip(reversed(sizes), reversed(segments), strict=True):
                code, index = divmod(code, size)
                parts.append(names[index])
            folders.append("/".join(reversed(parts)))
        return combined.indices, folders

    def _segments(self, column: pa.Array, name: str) -> tuple[pa.Array, list[str]]:
        """A code per row (int64, no nulls) and the ``key=value`` segment of each code."""
        if _temporal(column.type):
            granularity = self.granularity or "day"
            encoded = pc.floor_temporal(column, unit=granularity).dictionary_encode()
            values = pc.strftime(encoded.dictionary, format=GRANULARITIES[granularity]).to_pylist()
        else:
            if pa.types.is_boolean(column.type):
                column = column.cast(pa.string())
            encoded = column.dictionary_encode()
            values = encoded.dictionary.cast(pa.string()).to_pylist()
        prefix = f"{hive_escape(self.key(name, column.type))}="
        names = [prefix + (hive_escape(v) if v else HIVE_DEFAULT_PARTITION) for v in values]
        names.append(prefix + HIVE_DEFAULT_PARTITION)  # NULL: one past the values
        return encoded.indices.fill_null(len(names) - 1).cast(pa.int64()), names


# The longest file or folder name most file systems take, in bytes.
MAX_SEGMENT_BYTES = 255


def folded(folder: str) -> str:
    """A folder as storage that ignores case and Unicode normalisation sees it."""
    return unicodedata.normalize("NFC", folder).casefold()


def check_folders(folders: Iterable[str], export: str) -> None:
    """Refuse partition folders that storage would merge (case, normalisation) or not hold (length)."""
    where = f"export '{export}': " if export else ""
    seen: dict[str, str] = {}
    for folder in sorted(set(folders)):
        long = next((seg for seg in folder.split("/") if len(seg.encode()) > MAX_SEGMENT_BYTES), None)
        if long is not None:
            raise DataError(
                f"{where}the partition folder {long[:60]}... is {len(long.encode())} bytes, more than "
                f"the {MAX_SEGMENT_BYTES} a file system takes; partition by a shorter value (a prefix, or a hash)"
            )
        other = seen.setdefault(folded(folder), folder)
        if other != folder:
            raise DataError(
                f"{where}the partition folders {other} and {folder} differ only in letter case or "
                "Unicode normalisation, and are one folder on case-insensitive storage, where one would overwrite "
                "the other; normalise the column in the query (lower(), or a normalised form) and partition by that"
            )


def _temporal(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind)


def split_by_folder(batch: pa.RecordBatch, codes: pa.Array, folders: list[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """The rows of each folder, in their order within the batch.

    Each folder's rows are copied out: a slice would keep the whole batch alive for as
    long as any partition's row group holds a piece of it.
    """
    bounds = pc.min_max(codes).as_py()
    if bounds["min"] == bounds["max"]:
        yield folders[bounds["min"]], batch
        return
    order = pc.sort_indices(codes)  # a stable sort: rows keep their order within a folder
    runs = pc.run_end_encode(codes.take(order))  # one run per code
    start = 0
    for end, code in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        yield folders[code], batch.take(order.slice(start, end - start))
        start = end


class PartitionedWriter(PartWriter):
    """Routes rows to one writer per partition folder; its parts carry their folder."""

    def __init__(
        self,
        target: PartTarget,
        *,
        partitioning: Partitioning,
        open_writer: Callable[[Callable[[int], Path]], PartWriter],
        buffer_budget: int,
        export: str = "",
    ) -> None:
        super().__init__(target)
        self.partitioning = partitioning
        self.open_writer = open_writer
        self.buffer_budget = buffer_budget
        self.export = export
        self._serial = count()
        self._open: OrderedDict[str, PartWriter] = OrderedDict()  # the most recently written last

    def _writer_for(self, folder: str) -> PartWriter:
        writer = self._open.get(folder)
        if writer is not None:
            self._open.move_to_end(folder)
            return writer
        check_folders([folder, *self._open, *(p.folder for p in self.parts)], self.export)
        if len(self._open) >= MAX_OPEN_PARTITIONS:
            self._finish(*self._open.popitem(last=True))
        # Every staged file of every partition gets its own number.
        writer = self.open_writer(lambda _n: self.staging(next(self._serial)))
        self._open[folder] = writer
        return writer

    def _finish(self, folder: str, writer: PartWriter) -> None:
        self.parts += [dataclasses.replace(p, folder=folder) for p in writer.close()]

    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows, each to its partition's writer."""
        if batch.num_rows == 0:
            return
        for folder, rows in split_by_folder(batch, *self.partitioning.folders(batch)):
            self._writer_for(folder).write(rows)
            self.rows += rows.num_rows
        while sum(w.buffered_bytes() for w in self._open.values()) > self.buffer_budget:
            max(self._open.values(), key=lambda w: w.buffered_bytes()).flush()

    def bytes_written(self) -> int:
        """The finished parts and what every open writer has written."""
        return sum(p.bytes for p in self.parts) + sum(w.bytes_written() for w in self._open.values())

    def bytes_estimate(self) -> int:
        """The finished parts and every open writer's estimate."""
        return sum(p.bytes for p in self.parts) + sum(w.bytes_estimate() for w in self._open.values())

    def close(self) -> list[StagedPart]:
        """Finish every partition's parts (no rows: no parts)."""
        for folder in sorted(self._open):
            self._finish(folder, self._open.pop(folder))
        return list(self.parts)

    def abort(self) -> None:
        """Stop every writer and delete every staged file."""
        for writer in self._open.values():
            writer.abort()
        self._open.clear()
        self._discard([p.path for p in self.parts])
        self.parts = []

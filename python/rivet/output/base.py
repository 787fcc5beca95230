"""Shared shape of the part writers."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rivet.errors import ConfigError
from rivet.output.native import NativeTypes
from rivet.storage import staging

if TYPE_CHECKING:
    import pyarrow as pa

# A compression profile is a codec and a level chosen for a purpose.
COMPRESSION_PROFILES = {
    "none": ("none", None),
    "fast": ("snappy", None),
    "balanced": ("zstd", 3),
    "compact": ("zstd", 9),
}
# zstd level 1 encodes ~35% faster than level 3 for ~1.5% larger files.
DEFAULT_PARQUET_COMPRESSION = ("zstd", 1)


@dataclass(frozen=True)
class ParquetLayout:
    """How Parquet parts are laid out (the ``parquet:`` block); the defaults suit most tables.

    ``row_group_bytes`` None: rivet's default (32 MiB of Arrow data, shared by parallel
    workers); ``row_group_rows`` set: row groups of exactly that many rows.
    """

    row_group_bytes: int | None = None
    row_group_rows: int | None = None
    split_between_workers: bool = True
    data_page_bytes: int | None = None
    statistics: bool = True
    dictionary: bool | None = None  # None: decided per column from the first values
    # uuid and json columns in Parquet's own types, or as text.
    types: NativeTypes = field(default_factory=NativeTypes)


@dataclass(frozen=True)
class OutputFormat:
    """A file format with its compression."""

    kind: str
    compression: str
    level: int | None
    layout: ParquetLayout = ParquetLayout()

    @property
    def extension(self) -> str:
        """File extension, e.g. ``parquet`` or ``csv.gz``."""
        if self.kind == "parquet":
            return "parquet"
        return {"none": "csv", "gzip": "csv.gz", "zstd": "csv.zst"}[self.compression]


def output_format(
    kind: str,
    compression: str | None = None,
    level: int | None = None,
    profile: str | None = None,
) -> OutputFormat:
    """Resolve the codec: a profile, an explicit codec, or the format's default."""
    if profile is not None:
        if kind == "csv":
            raise ConfigError("compression_profile applies to parquet output only")
        codec, level = COMPRESSION_PROFILES[profile]
        return OutputFormat(kind, codec, level)
    if kind == "csv":
        return OutputFormat(kind, compression or "none", level)
    if compression is None:
        codec, default_level = DEFAULT_PARQUET_COMPRESSION
        return OutputFormat(kind, codec, level if level is not None else default_level)
    return OutputFormat(kind, compression, level)


def writer_memory_pool() -> pa.MemoryPool:
    """The Arrow memory pool the writers encode in.

    jemalloc hands freed memory back to the system within a second, so peak memory
    stays flat over a long export; pyarrow's default pool (mimalloc) holds on to it.
    """
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.system_memory_pool()


@dataclass(frozen=True)
class StagedPart:
    """A finished part file, not yet visible at the destination."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    folder: str = ""  # the partition folder it belongs in (partition_by), else the destination itself


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def finished_part(path: Path, rows: int) -> StagedPart:
    """Flush ``path`` to stable storage and describe it (through its staging descriptor)."""
    opened = Path(staging.handle(path))
    with open(opened, "rb+") as f:
        os.fsync(f.fileno())
    return StagedPart(path=path, rows=rows, bytes=opened.stat().st_size, sha256=file_sha256(opened))


@dataclass(frozen=True)
class PartTarget:
    """What a writer writes: the format, the schema, where part ``n`` is staged, and the part size limit."""

    fmt: OutputFormat
    schema: pa.Schema
    staging: Callable[[int], Path]
    max_file_size: int | None


class PartWriter(ABC):
    """Writes batches into one or more staged part files."""

    def __init__(self, target: PartTarget) -> None:
        self.fmt = target.fmt
        self.schema = target.schema
        self.staging = target.staging
        self.max_file_size = target.max_file_size
        self.parts: list[StagedPart] = []
        self.rows = 0

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows."""

    @abstractmethod
    def bytes_estimate(self) -> int:
        """About how many bytes the parts would hold if closed now."""

    def bytes_written(self) -> int:
        """Bytes in the part files so far (finished parts and the open one): what progress reports."""
        return sum(p.bytes for p in self.parts) + self._open_file_bytes()

    def _open_file_bytes(self) -> int:
        """Bytes already in the file being written (0 when none is open)."""
        return 0

    def buffered_bytes(self) -> int:
        """Rows held in memory, not yet written to a file."""
        return 0

    def flush(self) -> None:  # noqa: B027 - writers that hold no rows have nothing to flush
        """Write the rows held in memory now (a smaller row group)."""

    @abstractmethod
    def close(self) -> list[StagedPart]:
        """Finish every part (an empty result still yields one part with the schema)."""

    @abstractmethod
    def abort(self) -> None:
        """Stop and delete every staged file."""

    def _discard(self, paths: list[Path]) -> None:
        for p in paths:
            staging.remove(p)

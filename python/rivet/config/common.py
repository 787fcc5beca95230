"""What every block of rivet.yaml's schema shares: strict models, name patterns, tuning."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


# A state namespace a user names (derived ones start with "auto-").
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


# An Iceberg namespace or table: no dot, which would nest it.
# A table of ``tables:``, which also names its folder in the destination: schema.name or name.
TABLE_FOLDER_PATTERN = r"^[A-Za-z0-9_$][A-Za-z0-9_$-]*(\.[A-Za-z0-9_$][A-Za-z0-9_$-]*)?$"
ICEBERG_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"


# Keys that belong in a ``tuning:`` block; found elsewhere they get a pointed message.
TUNING_KEYS = (
    "profile",
    "batch_size",
    "batch_size_memory_mb",
    "throttle_ms",
    "statement_timeout_s",
    "lock_timeout_s",
    "max_retries",
    "retry_backoff_ms",
    "memory_threshold_mb",
    "max_batch_memory_mb",
    "on_batch_memory_exceeded",
)


# ``columns:`` override types. PostgreSQL takes decimal(p,s) and text; SQLite all of them.
OVERRIDE_TYPES = (
    "text",
    "string",
    "int8",
    "bigint",
    "integer",
    "float8",
    "double",
    "real",
    "bool",
    "boolean",
    "date",
    "timestamp",
    "datetime",
    "blob",
    "binary",
    "bytea",
)


DECIMAL_OVERRIDE = re.compile(r"^(?:decimal|numeric)\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)


# In a destination path, where the partition folders of partition_by go (a path ending there).
PARTITION_PLACEHOLDER = "{partition}"


def _yaml12_bool(value: Any) -> Any:
    """Only ``true`` and ``false`` (YAML 1.2, and a ``${VAR}`` that expands to one): never yes, on, 1."""
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    raise ValueError(f"expected true or false, got {value!r} (booleans are YAML 1.2's: yes, on and 1 are not)")


Bool = Annotated[bool, BeforeValidator(_yaml12_bool)]


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class StrictModel(BaseModel):
    """Frozen, and rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Keys of the original tool's later versions that rivet does not take, with what to use instead.
UNSUPPORTED_EXPORT_KEYS = {
    "chunk_size_memory_mb": "use chunk_size (rows); chunks share parts, which max_file_size sizes",
    "verify": "use rivet run --validate (every new part read back before the commit) or rivet validate",
    "load": "rivet writes files; load them with your warehouse's own loader",
    "target": "rivet writes files; load them with your warehouse's own loader",
    "split": "use max_file_size to rotate parts",
}


def _reject_unsupported(data: Any, keys: dict[str, str]) -> Any:
    """Refuse every key of ``keys`` in ``data`` at once, each with what to use instead."""
    if isinstance(data, dict):
        found = [f"{key}: {advice}" for key, advice in keys.items() if key in data]
        if found:
            raise ValueError("\n  - ".join(found))
    return data


def _reject_misplaced_tuning(data: Any, where: str) -> Any:
    if isinstance(data, dict):
        misplaced = [k for k in TUNING_KEYS if k in data]
        if misplaced:
            keys = ", ".join(misplaced)
            example = "\n".join(f"    {k}: {data[k]!r}" for k in misplaced)
            raise ValueError(f"{keys} must be nested under tuning: ({where}), for example\n  tuning:\n{example}")
    return data


class TuningConfig(StrictModel):
    """Source protection and batching; per-export values override the source's, key by key."""

    profile: Literal["fast", "balanced", "safe"] | None = None
    batch_size: PositiveInt | None = None
    batch_size_memory_mb: Annotated[float, Field(gt=0)] | None = None
    throttle_ms: NonNegativeInt | None = None
    statement_timeout_s: NonNegativeInt | None = None
    lock_timeout_s: NonNegativeInt | None = None
    max_retries: NonNegativeInt | None = None
    retry_backoff_ms: NonNegativeInt | None = None
    # the most memory one batch may hold; what to do with a single row above it
    max_batch_memory_mb: Annotated[float, Field(gt=0)] | None = None
    on_batch_memory_exceeded: Literal["warn", "fail", "auto_shrink"] | None = None
    # chunked: workers start no new chunk while the process's resident memory is above this
    memory_threshold_mb: Annotated[float, Field(gt=0)] | None = None
    # A single text or binary value above this many MiB fails the export, naming its column (None: no limit).
    max_value_mb: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _governor(cls, data: Any) -> Any:
        """The original tool's concurrency governor: refused when asked for, with what rivet offers."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("adaptive") is False:
            del data["adaptive"]  # what rivet does anyway
        asked = [k for k in ("adaptive", "min_parallel") if k in data]
        if asked:
            raise ValueError(
                f"{' and '.join(asked)}: rivet does not vary its connections with the source's load; it reads with "
                "exactly parallel connections, batches sized by memory (batch_size_memory_mb), and eases off with "
                "throttle_ms or profile: safe; set those (and a lower parallel) instead"
            )
        return data

    @model_validator(mode="after")
    def _one_batch_bound(self) -> TuningConfig:
        if self.batch_size is not None and self.batch_size_memory_mb is not None:
            raise ValueError("set batch_size or batch_size_memory_mb, not both")
        return self

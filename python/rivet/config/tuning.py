"""Tuning profiles and how source- and export-level settings merge."""

from __future__ import annotations

from dataclasses import dataclass

from rivet.config.common import TuningConfig

MIB = 1024 * 1024


@dataclass(frozen=True)
class Tuning:
    """Effective reader settings of one export."""

    profile: str
    batch_rows: int
    batch_bytes: int
    throttle_ms: int
    statement_timeout_s: int
    lock_timeout_s: int
    max_retries: int
    retry_backoff_ms: int
    # A batch is never cut above this; a single row above it is handled by on_batch_memory_exceeded.
    max_batch_bytes: int | None = None
    on_batch_memory_exceeded: str = "warn"
    # Workers of a chunked export claim no new chunk while the process is above this.
    memory_threshold_bytes: int | None = None
    # A single text or binary value above this fails the export (None: no limit).
    max_value_bytes: int | None = None


# Batches are bounded by bytes first (memory stays flat on wide rows) and rows second.
PROFILES: dict[str, Tuning] = {
    "fast": Tuning("fast", 262_144, 64 * MIB, 0, 0, 0, 1, 1_000),
    "balanced": Tuning("balanced", 131_072, 16 * MIB, 0, 300, 30, 3, 2_000),
    "safe": Tuning("safe", 32_768, 4 * MIB, 200, 120, 10, 5, 5_000),
}
DEFAULT_PROFILE = "balanced"


def resolve_tuning(source: TuningConfig | None, export: TuningConfig | None) -> Tuning:
    """Merge ``source.tuning`` and ``exports[].tuning`` (the export wins, key by key) over a profile."""

    def pick(key: str) -> float | int | str | None:
        for layer in (export, source):
            value = getattr(layer, key, None) if layer is not None else None
            if value is not None:
                return value
        return None

    base = PROFILES[str(pick("profile") or DEFAULT_PROFILE)]

    def number(key: str, default: int) -> int:
        value = pick(key)
        return default if value is None else int(value)

    rows, nbytes = base.batch_rows, base.batch_bytes
    batch_size, memory_mb = pick("batch_size"), pick("batch_size_memory_mb")
    # An explicit row count means exactly that many rows; a memory target means that many bytes.
    if batch_size is not None:
        rows, nbytes = int(batch_size), 1 << 40
    if memory_mb is not None:
        rows, nbytes = 1 << 31, int(float(memory_mb) * MIB)
    cap = pick("max_batch_memory_mb")
    if cap is not None:
        nbytes = min(nbytes, int(float(cap) * MIB))
    threshold = pick("memory_threshold_mb")
    value_mb = pick("max_value_mb")
    return Tuning(
        max_value_bytes=int(float(value_mb) * MIB) if value_mb else None,  # 0: no limit, as in the original
        max_batch_bytes=int(float(cap) * MIB) if cap is not None else None,
        on_batch_memory_exceeded=str(pick("on_batch_memory_exceeded") or "warn"),
        memory_threshold_bytes=int(float(threshold) * MIB) if threshold is not None else None,
        profile=base.profile,
        batch_rows=rows,
        batch_bytes=nbytes,
        throttle_ms=number("throttle_ms", base.throttle_ms),
        statement_timeout_s=number("statement_timeout_s", base.statement_timeout_s),
        lock_timeout_s=number("lock_timeout_s", base.lock_timeout_s),
        max_retries=number("max_retries", base.max_retries),
        retry_backoff_ms=number("retry_backoff_ms", base.retry_backoff_ms),
    )

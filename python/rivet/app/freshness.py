"""Whether each export's last published run is recent enough (``freshness:``), from the state store alone.

A run's rows are as of when it started (a snapshot, or the log's end as it began), so an
export's age is the time since its last publishing run started (or its last run skipped
for having nothing new: the output was current then). An export that never published is
as stale as can be.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rivet.core.runinfo import from_iso, utc_now

if TYPE_CHECKING:
    import datetime as dt

    from rivet.config import LoadedConfig
    from rivet.config.blocks import FreshnessConfig
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey

FRESH, WARN, ERROR, UNSET = "fresh", "warn", "error", "unset"


@dataclass(frozen=True)
class Freshness:
    """One export's verdict."""

    export: str
    status: str
    last_success: str | None
    age_s: float | None
    warn_after_s: float | None
    error_after_s: float | None

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return asdict(self)

    def sentence(self) -> str:
        """The verdict for people."""
        limits = ", ".join(
            f"{what} after {_duration(s)}"
            for what, s in (("warn", self.warn_after_s), ("error", self.error_after_s))
            if s is not None
        )
        if self.status == UNSET:
            return f"{self.export}: no freshness set"
        if self.last_success is None:
            return f"{self.export}: {self.status}: never published ({limits})"
        assert self.age_s is not None
        said = "fresh" if self.status == FRESH else f"stale ({self.status})"
        ago = _duration(self.age_s)
        return f"{self.export}: {said}: its last published run started {self.last_success}, {ago} ago ({limits})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


def check_freshness(loaded: LoadedConfig, store: StateStore, exports: list[tuple[str, ExportKey]]) -> list[Freshness]:
    """The verdict of each ``(name, key)``."""
    now = utc_now()
    verdicts = []
    for name, key in exports:
        last = store.last_success(key, skipped_too=True)  # a skipped run found the source with nothing new
        verdicts.append(verdict(name, loaded.config.freshness_of(loaded.export(name)), last, now))
    return verdicts


def verdict(name: str, limits: FreshnessConfig | None, last: dict[str, Any] | None, now: dt.datetime) -> Freshness:
    """Export ``name``'s verdict against ``limits``, its last successful run being ``last``."""
    warn, error = limits.limits() if limits is not None else (None, None)
    started = last["started_at"] if last is not None else None
    age = (now - from_iso(started)).total_seconds() if started is not None else None
    if limits is None:
        status = UNSET
    elif age is None:
        status = ERROR if error is not None else WARN
    elif error is not None and age >= error:
        status = ERROR
    elif warn is not None and age >= warn:
        status = WARN
    else:
        status = FRESH
    return Freshness(name, status, started, None if age is None else round(age, 3), warn, error)

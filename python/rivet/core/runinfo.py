"""Run ids, timestamps and process metrics shared by the engines."""

from __future__ import annotations

import datetime as dt
import os
import resource
import sys


def utc_now() -> dt.datetime:
    """The current UTC time."""
    return dt.datetime.now(dt.timezone.utc)


def run_id_for(export: str, at: dt.datetime) -> str:
    """``<export>_<YYYYMMDDTHHMMSS.mmmZ>``."""
    return f"{export}_{at.strftime('%Y%m%dT%H%M%S')}.{at.microsecond // 1000:03d}Z"


def part_stem(export: str, at: dt.datetime) -> str:
    """``<export>_<YYYYMMDD_HHMMSS_mmm>``: the start of every part name of a run."""
    return f"{export}_{at.strftime('%Y%m%d_%H%M%S')}_{at.microsecond // 1000:03d}"


def iso(at: dt.datetime) -> str:
    """ISO-8601 with milliseconds and ``Z``."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def iso_us(at: dt.datetime) -> str:
    """ISO-8601 with microseconds and ``Z`` (where spans are placed by it)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> dt.datetime:
    """The time ``iso`` wrote."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (Linux; None where the system does not say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process.

    On Linux from ``VmHWM``: ``ru_maxrss`` survives ``exec``, so a rivet started by a large
    process would report its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

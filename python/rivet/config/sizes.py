"""Parsing human byte sizes such as ``512MB`` (binary units: 1 MB = 1024 KB) and durations such as ``2h``."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1024**4,
    "TIB": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def _given(value: str | int | float, what: str) -> float | str:
    """A number as itself, text as given; a boolean (YAML's ``true``) is no quantity."""
    if isinstance(value, bool):
        raise ValueError(f"not a {what}: {value!r}")
    return float(value) if isinstance(value, int | float) else value


def parse_size(value: str | int | float) -> int:
    """Bytes in ``value`` (``"1GB"``, ``"100KB"``, ``"1.5MB"``, ``123``).

    Raises:
        ValueError: the text is not a size.
    """
    given = _given(value, "size")
    if isinstance(given, float):
        number, unit = given, ""
    else:
        match = _SIZE.match(given)
        if not match:
            raise ValueError(f"not a size: {value!r} (examples: 512MB, 1GB, 100KB, 123B)")
        number, unit = float(match.group(1)), match.group(2).upper()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r} (use B, KB, MB, GB or TB)")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)([smhdw]))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value`` (``"2h"``, ``"1h30m"``, ``"45s"``, ``"7d"``; a number is seconds).

    Raises:
        ValueError: the text is not a duration.
    """
    given = _given(value, "duration")
    if isinstance(given, str):
        text = given.strip().lower().replace(" ", "")
        if not _DURATION.match(text):
            raise ValueError(f"not a duration: {value!r} (examples: 45s, 30m, 2h, 1h30m, 7d)")
        given = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if given <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return given

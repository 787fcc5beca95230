"""Parsing human byte sizes such as ``512MB`` (binary units: 1 MB = 1024 KB)."""

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


def parse_size(value: str | int | float) -> int:
    """Bytes in ``value`` (``"1GB"``, ``"100KB"``, ``"1.5MB"``, ``123``).

    Raises:
        ValueError: the text is not a size.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"not a size: {value!r} (examples: 512MB, 1GB, 100KB, 123B)")
        number, unit = float(match.group(1)), match.group(2).upper()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r} (use B, KB, MB, GB or TB)")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size

"""Where the exports of one config write, checked together.

Two exports may share a folder (their part names start with the export name, and
each then gets its own ``<export>.manifest.json`` and ``_SUCCESS.<export>``), but no
export may write inside another's folder: a reader of the outer folder would read
the inner export's rows as its own.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING

from rivet.config.destination import destination_url
from rivet.errors import ConfigError

if TYPE_CHECKING:
    from rivet.config import LoadedConfig

# Placeholders expand alike for every export of a run; any fixed day compares them.
FIXED_DAY = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


def destination_urls(loaded: LoadedConfig) -> dict[str, str]:
    """Each export's destination folder, resolved (with ``{date}`` on a fixed day)."""
    return {
        e.name: destination_url(e.destination, loaded.base_dir, e.name, FIXED_DAY).rstrip("/")
        for e in loaded.config.exports
    }


def check_layout(loaded: LoadedConfig) -> None:
    """Refuse a config where one export writes inside another export's folder."""
    urls = sorted(destination_urls(loaded).items(), key=lambda item: item[1])
    for outer_name, outer in urls:
        for inner_name, inner in urls:
            if inner.startswith(outer + "/"):
                raise ConfigError(
                    f"exports[{inner_name}].destination ({inner}) is inside the destination of export "
                    f"'{outer_name}' ({outer}); a reader of that folder would read both exports' rows. "
                    "Give each export its own folder, e.g. path: out/{export}"
                )
    shared = shared_folders(loaded)
    for e in loaded.config.exports:
        if e.format in ("delta", "iceberg") and (url := destination_urls(loaded)[e.name]) in shared:
            raise ConfigError(
                f"exports[{e.name}].destination ({url}) is shared with another export; a {e.format} table is "
                "one export's folder (its log would list only the last export's parts). Give it its own folder"
            )


def shared_folders(loaded: LoadedConfig) -> set[str]:
    """Folders that several exports write into."""
    counts = Counter(destination_urls(loaded).values())
    return {url for url, n in counts.items() if n > 1}

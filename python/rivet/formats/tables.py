"""Table formats (Delta Lake, Iceberg): their library checked before a run, imported while it reads.

Their libraries take a good part of a second to import; a thread imports them while
the rows are read (the scan and the writer release the GIL), so the commit at the end
does not wait for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import TYPE_CHECKING

from rivet.errors import ConfigError

if TYPE_CHECKING:
    from rivet.destinations import DestinationSpec

# What each format's commit imports, and the extra that installs it.
LIBRARIES = {
    "delta": (("deltalake",), "delta"),
    "iceberg": (("pyiceberg.catalog.sql", "pyiceberg.table", "pyiceberg.io.pyarrow"), "iceberg"),
}


def prepare(table_format: str | None, destination: DestinationSpec) -> None:
    """Refuse a run whose table format cannot be written there; start importing its library."""
    if table_format is None:
        return
    if table_format == "delta":
        from rivet.formats.delta import table_uri

        table_uri(destination)
    else:
        from rivet.formats.iceberg import table_location

        table_location(destination)
    modules, _ = LIBRARIES[table_format]
    package = modules[0].split(".")[0]
    if importlib.util.find_spec(package) is None:
        raise missing_library(table_format)
    threading.Thread(target=_import, args=(modules,), name=f"rivet-import-{package}", daemon=True).start()


def missing_library(table_format: str) -> ConfigError:
    """The error of a run whose table format's library is not installed."""
    modules, extra = LIBRARIES[table_format]
    package = modules[0].split(".")[0]
    return ConfigError(f'format: {table_format} needs the {package} package: pip install "rivet[{extra}]"')


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the commit imports it again and reports what fails
            return

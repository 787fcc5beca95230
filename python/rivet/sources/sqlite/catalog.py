"""SQLite's catalog: tables and columns from the file itself (read only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from rivet.sources.base import SourceCapabilities
from rivet.sources.catalog import Catalog, Column, Table


class SqliteCatalog(Catalog):
    """SQLite: a local file, read in one stream."""

    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(server=False, reads_in_chunks=False)

    def tables(self, source: Any, schema: str | None) -> list[Table]:
        """Every table but SQLite's own, with its primary key and columns."""
        conn = sqlite3.connect(f"{Path(source.path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            tables = []
            for name in names:
                if name.startswith("sqlite_"):
                    continue
                info = conn.execute('SELECT name, "notnull", type, pk FROM pragma_table_info(?)', (name,)).fetchall()
                key = [r[0] for r in sorted((r for r in info if r[3]), key=lambda r: r[3])]
                columns = [Column(r[0], bool(r[1]), str(r[2])) for r in info]
                tables.append(Table(None, name, 0, key, columns))
            return tables
        finally:
            conn.close()

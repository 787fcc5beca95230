"""``rivet init``: a rivet.yaml written from what a live database's catalog shows.

One export per table. With ``discover``, each export's mode comes from the catalog,
never from reading rows: a NOT NULL timestamp that moves with every change
(``updated_at`` and its kin) makes it incremental on that column; an append-only
table (a log, events, audit or history table) with an integer primary key makes it
incremental on the key; a table estimated above ``chunk_above`` rows with an integer
primary key makes it chunked with two workers and checkpoints; anything else is
full. Columns the type report refuses are read as text. Every export carries a
comment that says why. The URL goes to an environment variable, never into the file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rivet.config.models import SourceConfig
from rivet.errors import ConfigError, UnsupportedTypeError
from rivet.redact import redact_url
from rivet.sources.base import ColumnOverrides
from rivet.sources.resolve import resolve_source

# Timestamp columns that move forward whenever a row changes.
CHANGE_COLUMNS = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_updated",
    "changed_at",
    "update_time",
    "updated",
    "modified",
    "last_update",
)
APPEND_ONLY = re.compile(r"(^|_)(log|logs|events?|audit|history|journal)$", re.IGNORECASE)
INTEGER_TYPES = re.compile(r"^(small|big|tiny|medium)?int(eger)?\b|^serial|^bigserial|^int[248]\b", re.IGNORECASE)
TEMPORAL_TYPES = re.compile(r"^(timestamp|datetime|date\b)", re.IGNORECASE)
DEFAULT_CHUNK_ABOVE = 1_000_000
NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Column:
    """A column as the catalog shows it."""

    name: str
    not_null: bool
    type: str


@dataclass
class Table:
    """A table, its estimated rows, primary key and columns."""

    schema: str | None
    name: str
    rows: int
    key: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        """``schema.name`` (SQLite: ``name``)."""
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass
class Proposal:
    """One export to write: its keys, in order, and why."""

    name: str
    keys: dict[str, Any]
    why: str
    overrides: dict[str, str] = field(default_factory=dict)
    override_notes: dict[str, str] = field(default_factory=dict)


def source_settings(url: str) -> dict[str, Any]:
    """The ``source:`` block for a URL (a SQLite path or URL too)."""
    if url.startswith(("postgres://", "postgresql://")):
        return {"type": "postgres", "url": url}
    if url.startswith(("mysql://", "mariadb://")):
        return {"type": "mysql", "url": url}
    if url.startswith("sqlite:///"):
        return {"type": "sqlite", "path": url.removeprefix("sqlite:///")}
    if Path(url).is_file():
        return {"type": "sqlite", "path": url}
    raise ConfigError(
        f"--source: '{redact_url(url)}' is not a postgresql://, mysql:// or sqlite:/// URL, nor a SQLite file"
    )


def read_catalog(url: str, schema: str | None, only: list[str] | None) -> tuple[dict[str, Any], Any, list[Table]]:
    """The source settings, the source, and the tables of ``schema`` (all, or ``only``), from the catalog."""
    settings = source_settings(url)
    source = resolve_source(SourceConfig.model_validate(settings), Path.cwd())
    if settings["type"] == "sqlite":
        tables = _sqlite_tables(Path(settings["path"]))
    else:
        session = source.session()  # type: ignore[union-attr]
        rows = session.query(_tables_sql(settings["type"], source, schema))
        tables = [Table(r[0], str(r[1]), int(float(r[2] or 0))) for r in rows]
        for table in tables:
            table.key = [r[0] for r in session.query(source.dialect.primary_key_query(table.qualified)) if r[0]]
            table.columns = [
                Column(str(r[0]), r[1] in ("t", "1", "true"), str(r[2]))
                for r in session.query(_columns_sql(settings["type"], source, table))
            ]
    if only:
        wanted = set(only)
        tables = [t for t in tables if t.name in wanted or t.qualified in wanted]
        missing = wanted - {t.name for t in tables} - {t.qualified for t in tables}
        if missing:
            raise ConfigError(f"--table: no table {', '.join(sorted(missing))} in the source")
    return settings, source, tables


def _tables_sql(kind: str, source: Any, schema: str | None) -> str:
    if kind == "postgres":
        where = source.dialect.string(schema or "public")
        return (
            "SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = {where} ORDER BY c.relname"
        )
    where = source.dialect.string(schema) if schema else "DATABASE()"
    return (
        "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = {where} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
    )


def _columns_sql(kind: str, source: Any, table: Table) -> str:
    if kind == "postgres":
        return (
            "SELECT a.attname, a.attnotnull, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            f"WHERE a.attrelid = {source.dialect.relation(table.qualified)} AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum"
        )
    return (
        "SELECT COLUMN_NAME, IF(IS_NULLABLE = 'NO', 1, 0), COLUMN_TYPE FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = {source.dialect.string(table.schema or '')} "
        f"AND TABLE_NAME = {source.dialect.string(table.name)} ORDER BY ORDINAL_POSITION"
    )


def _sqlite_tables(path: Path) -> list[Table]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
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


def propose(table: Table, source: Any, *, discover: bool, chunk_above: int, taken: set[str]) -> Proposal:
    """The export of ``table``: its mode and why, and text overrides for refused columns."""
    name = _export_name(table, taken)
    keys: dict[str, Any] = {"table": table.qualified}
    why = f"~{table.rows:,} rows" if table.rows else "rows not estimated"
    proposal = Proposal(name, keys, why)
    _refused_as_text(table, source, proposal)
    if not discover:
        proposal.why += ": full (run rivet init --discover to choose modes from the catalog)"
        return proposal
    integer_key = len(table.key) == 1 and _is(table, table.key[0], INTEGER_TYPES)
    changes = next(
        (c for c in table.columns if c.name.lower() in CHANGE_COLUMNS and c.not_null and TEMPORAL_TYPES.match(c.type)),
        None,
    )
    if changes is not None:
        keys |= {"mode": "incremental", "cursor_column": changes.name}
        proposal.why += f"; {changes.name} moves forward with every change (NOT NULL {changes.type}): incremental"
    elif integer_key and APPEND_ONLY.search(table.name):
        keys |= {"mode": "incremental", "cursor_column": table.key[0]}
        proposal.why += f"; an append-only table with an integer key {table.key[0]}: incremental on the key"
    elif integer_key and table.rows >= chunk_above and source.dialect.reads_in_chunks:
        size = min(2_000_000, max(100_000, table.rows // 32))
        keys |= {
            "mode": "chunked",
            "chunk_column": table.key[0],
            "chunk_size": size,
            "parallel": 2,
            "chunk_checkpoint": True,
        }
        proposal.why += f"; large, with an integer key {table.key[0]}: chunked by {size:,} rows, 2 workers, resumable"
    else:
        reason = "no change column, append-only key or size to chunk"
        proposal.why += f"; {reason}: full"
    return proposal


def _is(table: Table, column: str, pattern: re.Pattern[str]) -> bool:
    return any(c.name == column and pattern.match(c.type) for c in table.columns)


def _export_name(table: Table, taken: set[str]) -> str:
    base = NAME.sub("_", table.name).strip("_") or "table"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _refused_as_text(table: Table, source: Any, proposal: Proposal) -> None:
    """Columns the readers cannot export exactly are read as text (the type report's verdict)."""
    query = f"SELECT * FROM {source.dialect.qualified(table.qualified)}"
    try:
        source.describe(query, ColumnOverrides({}, {}))
    except UnsupportedTypeError as e:
        for column in e.columns:
            proposal.overrides[column["column"]] = "text"
            proposal.override_notes[column["column"]] = f"{column.get('source_type', '?')}: read as text"


PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    """``value`` as YAML: plain when it reads back as the same string, else double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return text if PLAIN.match(text) and text.lower() not in YAML_WORDS else json.dumps(text)


def render_config(
    settings: dict[str, Any], proposals: list[Proposal], *, url_env: str, shown_url: str, out_dir: str
) -> str:
    """The rivet.yaml text, commented."""
    lines = [f"# Written by rivet init from {shown_url} on {dt.date.today().isoformat()}."]
    if settings["type"] == "sqlite":
        lines += ["source:", "  type: sqlite", f"  path: {json.dumps(settings['path'])}"]
    else:
        lines += [
            f"# The source URL is read from ${url_env}: set it where rivet runs (no password in this file).",
            "source:",
            f"  type: {settings['type']}",
            f"  url_env: {url_env}",
        ]
    lines += ["", "exports:"]
    for p in proposals:
        lines.append(f"  # {p.keys['table']}: {p.why}")
        lines.append(f"  - name: {p.name}")
        for key, value in p.keys.items():
            lines.append(f"    {key}: {_scalar(value)}")
        lines.append(f"    destination: {_scalar(f'{out_dir}/{p.name}')}")
        if p.overrides:
            lines.append("    columns:")
            for column, kind in p.overrides.items():
                lines.append(f"      {_scalar(column)}: {kind}  # {p.override_notes[column]}")
    return "\n".join(lines) + "\n"

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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from rivet.config.connection import SourceConfig
from rivet.core.redact import redact_url
from rivet.errors import ConfigError, UnsupportedTypeError
from rivet.sources.base import ColumnOverrides
from rivet.sources.catalog import Table
from rivet.sources.registry import FILE_DATABASE, capabilities_for, kind_of_url
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
# Key column types keyset chunks walk (chunk_by_key): integers, text and UUIDs.
# Not TINYINT(1) (read as a boolean), BIT, ENUM, or TEXT (a key on it indexes only a prefix).
KEYSET_TYPES = re.compile(
    r"^((small|big|medium)?int(eger)?\b|tinyint(?!\(1\))|(var)?char|character|uuid)", re.IGNORECASE
)
TEMPORAL_TYPES = re.compile(r"^(timestamp|datetime|date\b)", re.IGNORECASE)
DEFAULT_CHUNK_ABOVE = 1_000_000
NAME = re.compile(r"[^A-Za-z0-9_-]+")


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
    if (named := kind_of_url(url)) is not None:
        kind, rest = named
        return {"type": kind, "url": url} if capabilities_for(kind).server else {"type": kind, "path": rest}
    if Path(url).is_file():
        return {"type": FILE_DATABASE, "path": url}
    raise ConfigError(
        f"--source: '{redact_url(url)}' is not a postgresql://, mysql:// or sqlite:/// URL, nor a SQLite file"
    )


def read_catalog(url: str, schema: str | None, only: list[str] | None) -> tuple[dict[str, Any], Any, list[Table]]:
    """The source settings, the source, and the tables of ``schema`` (all, or ``only``), from the catalog."""
    settings = source_settings(url)
    source = resolve_source(TypeAdapter(SourceConfig).validate_python(settings), Path.cwd())
    tables = source.catalog.tables(source, schema)
    if only:
        wanted = {source.dialect.table_name(t) for t in only}
        tables = [t for t in tables if (t.name,) in wanted or t.parts in wanted]
        missing = wanted - {(t.name,) for t in tables} - {t.parts for t in tables}
        if missing:
            shown = ", ".join(sorted(source.dialect.table_text(m) for m in missing))
            raise ConfigError(f"--table: no table {shown} in the source")
    return settings, source, tables


def propose(table: Table, source: Any, *, discover: bool, chunk_above: int, taken: set[str]) -> Proposal:
    """The export of ``table``: its mode and why, and text overrides for refused columns."""
    name = _export_name(table, taken)
    keys: dict[str, Any] = {"table": source.dialect.table_text(table.parts)}
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
    elif integer_key and table.rows >= chunk_above and source.catalog.capabilities.reads_in_chunks:
        size = min(2_000_000, max(100_000, table.rows // 32))
        keys |= {
            "mode": "chunked",
            "chunk_column": table.key[0],
            "chunk_size": size,
            "parallel": 2,
            "chunk_checkpoint": True,
        }
        proposal.why += f"; large, with an integer key {table.key[0]}: chunked by {size:,} rows, 2 workers, resumable"
    elif (
        table.key
        and table.rows >= chunk_above
        and source.catalog.capabilities.reads_in_chunks
        and not source.catalog.capabilities.splits_tables_by_pages  # PostgreSQL: pages read faster
        and all(_is(table, k, KEYSET_TYPES) for k in table.key)
    ):
        # Smaller than integer ranges: each chunk is one statement, kept well under a second.
        size = min(500_000, max(100_000, table.rows // 32))
        key = table.key[0] if len(table.key) == 1 else list(table.key)
        keys |= {"mode": "chunked", "chunk_by_key": key, "chunk_size": size, "parallel": 2, "chunk_checkpoint": True}
        shown = ", ".join(table.key)
        proposal.why += f"; large, with a primary key ({shown}) that is not one integer: keyset chunks of {size:,} rows"
    else:
        reason = "no change column, append-only key or size to chunk"
        proposal.why += f"; {reason}: full"
    return proposal


def _is(table: Table, column: str, pattern: re.Pattern[str]) -> bool:
    return any(c.name == column and pattern.match(c.type) for c in table.columns)


def _export_name(table: Table, taken: set[str]) -> str:
    """A name that is safe in files and YAML, unique even where letter case does not count (its folder)."""
    base = NAME.sub("_", table.name).strip("_-") or "table"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name.lower())
    return name


def _refused_as_text(table: Table, source: Any, proposal: Proposal) -> None:
    """Columns the readers cannot export exactly are read as text (the type report's verdict)."""
    query = f"SELECT * FROM {table.sql(source.dialect)}"
    try:
        source.describe(query, ColumnOverrides({}, {}))
    except UnsupportedTypeError as e:
        for column in e.columns:
            proposal.overrides[column["column"]] = "text"
            proposal.override_notes[column["column"]] = f"{column.get('source_type', '?')}: read as text"


PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    """``value`` as a YAML value that loads back as itself: plain when safe, else double-quoted.

    ``${`` is written ``$${`` so a name from the catalog never expands a variable when the
    config loads.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = str(value)
    if PLAIN.match(text) and text.lower() not in YAML_WORDS:
        return text
    return _quoted(text.replace("${", "$${"))


def _key(text: str) -> str:
    """A mapping key (never expanded) that loads back as ``text``."""
    return text if PLAIN.match(text) and text.lower() not in YAML_WORDS else _quoted(text)


def _quoted(text: str) -> str:
    """A double-quoted YAML scalar: every control or line-breaking character escaped."""
    return yaml.dump(text, Dumper=yaml.SafeDumper, default_style='"', width=2**31, allow_unicode=True).rstrip("\n")


def _comment(text: str) -> str:
    """Text for after a ``#``: a line break or any other unprintable character cannot end the comment."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def render_config(
    settings: dict[str, Any], proposals: list[Proposal], *, url_env: str, shown_url: str, out_dir: str
) -> str:
    """The rivet.yaml text, commented."""
    lines = [f"# Written by rivet init from {_comment(shown_url)} on {dt.date.today().isoformat()}."]
    if not capabilities_for(settings["type"]).server:
        lines += ["source:", f"  type: {settings['type']}", f"  path: {_scalar(settings['path'])}"]
    else:
        lines += [
            f"# The source URL is read from ${_comment(url_env)}: set it where rivet runs (no password in this file).",
            "source:",
            f"  type: {settings['type']}",
            f"  url_env: {_scalar(url_env)}",
        ]
    lines += ["", "exports:"]
    for p in proposals:
        lines.append(f"  # {_comment(p.keys['table'])}: {_comment(p.why)}")
        lines.append(f"  - name: {p.name}")
        for key, value in p.keys.items():
            lines.append(f"    {key}: {_scalar(value)}")
        lines.append(f"    destination: {_scalar(f'{out_dir}/{p.name}')}")
        lines.append("    parquet: {uuid: native, json: native}  # Parquet's own UUID and JSON types, not text")
        if p.overrides:
            lines.append("    columns:")
            for column, kind in p.overrides.items():
                lines.append(f"      {_key(column)}: {kind}  # {_comment(p.override_notes[column])}")
    return "\n".join(lines) + "\n"

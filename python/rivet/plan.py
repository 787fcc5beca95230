"""Resolving one export of a config into a plain, serialisable plan."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rivet.config import ExportConfig, LoadedConfig
from rivet.config.sizes import parse_size
from rivet.destinations import DestinationSpec, resolve_destination
from rivet.errors import ConfigError
from rivet.formats import OutputFormat, output_format
from rivet.sources import ColumnOverrides, parse_overrides, resolve_source
from rivet.sources.postgres import PostgresSource
from rivet.sources.sqlite import SqliteSource
from rivet.tuning import Tuning, resolve_tuning

# Modes whose engines arrive later; the config schema already accepts their keys.
IMPLEMENTED_MODES = ("full",)


@dataclass(frozen=True)
class ExportPlan:
    """Everything one export needs; the engine never reads the YAML again."""

    name: str
    mode: str
    query: str
    source: PostgresSource | SqliteSource
    overrides: ColumnOverrides
    format: OutputFormat
    max_file_size: int | None
    destination: DestinationSpec
    tuning: Tuning

    def fingerprint(self) -> str:
        """Hash of what decides the output: query, mode, overrides, format."""
        basis = json.dumps(
            [self.mode, self.query, self.overrides.decimal, self.overrides.other, self.format.kind],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view with credentials redacted."""
        return {
            "export": self.name,
            "mode": self.mode,
            "query": self.query,
            "source": self.source.redacted(),
            "format": self.format.kind,
            "compression": self.format.compression,
            "compression_level": self.format.level,
            "max_file_size": self.max_file_size,
            "destination": self.destination.url,
            "tuning": self.tuning.__dict__,
            "fingerprint": self.fingerprint(),
        }


def table_query(table: str, source: PostgresSource | SqliteSource) -> str:
    """``SELECT * FROM "schema"."table"`` for ``table: schema.table``."""
    parts = [p for p in table.split(".")]
    if not 1 <= len(parts) <= 3 or any(not p.strip() for p in parts):
        raise ConfigError(f"table: '{table}' is not a [schema.]table name")
    return "SELECT * FROM " + ".".join(source.quote_identifier(p.strip()) for p in parts)


def _query_text(export: ExportConfig, base_dir: Path, source: PostgresSource | SqliteSource) -> str:
    if export.query is not None:
        return export.query
    if export.table is not None:
        return table_query(export.table, source)
    assert export.query_file is not None
    path = (base_dir / export.query_file).resolve()
    if not path.is_relative_to(base_dir.resolve()):
        raise ConfigError(f"exports.{export.name}.query_file: {export.query_file} is outside the config directory")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"exports.{export.name}.query_file: cannot read {path}: {e.strerror or e}") from None


def build_plan(loaded: LoadedConfig, export: ExportConfig, now: dt.datetime | None = None) -> ExportPlan:
    """Resolve ``export``: source connection, query text, format, destination, tuning."""
    if export.mode not in IMPLEMENTED_MODES:
        raise ConfigError(
            f"export '{export.name}': mode '{export.mode}' is not available in this version of rivet "
            f"(available: {', '.join(IMPLEMENTED_MODES)})"
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    config = loaded.config
    source = resolve_source(config.source, loaded.base_dir)
    return ExportPlan(
        name=export.name,
        mode=export.mode,
        query=_query_text(export, loaded.base_dir, source),
        source=source,
        overrides=parse_overrides(export.columns),
        format=output_format(export.format, export.compression, export.compression_level, export.compression_profile),
        max_file_size=parse_size(export.max_file_size) if export.max_file_size is not None else None,
        destination=resolve_destination(export.destination, loaded.base_dir, export.name, now),
        tuning=resolve_tuning(config.source.tuning, export.tuning),
    )

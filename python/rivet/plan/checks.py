"""What a run refuses before it reads, checked alike by ``rivet run``, ``rivet check`` and ``check --config-only``.

Two kinds, each in one place:

* :func:`export_problems`: what the config alone decides (no server): what the source
  can do (chunks, shared snapshots), the connection URL (its scheme against
  ``source.type``, its parameters), the destination's protocol, and a table format's
  library, store and settings. ``build_plan`` raises the first; ``check --config-only``
  lists them all.
* :func:`output_schema`: what the columns decide (the query described): partition
  columns, the table format's types, Delta's exact-value partitions. A run checks it
  before its first row; ``rivet check`` after describing each query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from rivet.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.config import ExportConfig, LoadedConfig
    from rivet.output.meta import Stamp
    from rivet.plan.export import ExportPlan


def export_problems(loaded: LoadedConfig, export: ExportConfig, *, offline: bool = False) -> list[str]:
    """Every problem of ``export`` a run would refuse before reading, found without a server.

    ``offline``: the run's environment may be missing; a source whose URL cannot be read
    here is not checked (its variable is named in the result of the config check).
    """
    found = []
    for check in CHECKS:
        try:
            check(loaded, export, offline)
        except ConfigError as e:
            found.append(str(e))
    return found


def check_export(loaded: LoadedConfig, export: ExportConfig) -> None:
    """Raise the first problem :func:`export_problems` finds."""
    problems = export_problems(loaded, export)
    if problems:
        raise ConfigError(problems[0])


def _capabilities(loaded: LoadedConfig, export: ExportConfig, offline: bool) -> None:
    """What the source can do: chunks and parallel reads, a snapshot shared by connections."""
    from rivet.sources.registry import capabilities_for

    can = capabilities_for(loaded.config.source.type)
    if (export.mode == "chunked" or (export.parallel or 1) > 1) and not can.reads_in_chunks:
        raise ConfigError(f"export '{export.name}': chunked and parallel reads need a postgres or mysql source")
    if export.mode == "cdc" and not can.captures_changes:
        raise ConfigError(
            f"export '{export.name}': mode: cdc reads a server's log and needs a postgres or mysql source"
        )
    if export.snapshot == "consistent" and not can.shares_snapshots:
        raise ConfigError(
            f"export '{export.name}': snapshot: consistent needs PostgreSQL (MySQL cannot share a snapshot "
            "between connections)"
        )


def _source(loaded: LoadedConfig, export: ExportConfig, offline: bool) -> None:
    """The connection URL as a connect would read it: its scheme against ``source.type``, its parameters."""
    from rivet.sources.network import NetworkSource
    from rivet.sources.resolve import resolve_source

    source_config = loaded.config.source
    if offline and source_config.url_env is not None and not loaded.variables.get(source_config.url_env):
        return  # the run's environment has the URL; this one does not
    source = resolve_source(source_config, loaded.base_dir)
    if isinstance(source, NetworkSource):
        source.target()


def _destination(loaded: LoadedConfig, export: ExportConfig, offline: bool) -> None:
    """The destination's protocol, and a table format's library, store and settings."""
    from rivet.output.tables import TABLE_FORMATS, table_format
    from rivet.output.tables.iceberg import IcebergTable
    from rivet.storage.destinations import check_atomic, resolve_destination

    spec = resolve_destination(export.destination, loaded.base_dir, export.name, dt.datetime.now(dt.timezone.utc),
                               credentials=False)  # fmt: skip
    check_atomic(spec.url)
    if export.format not in TABLE_FORMATS:
        return
    fmt = table_format(export.format, IcebergTable.from_config(export.iceberg, export.name, loaded.base_dir))
    fmt.check_installed()
    fmt.check_destination(spec)


CHECKS: tuple[Callable[[LoadedConfig, ExportConfig, bool], None], ...] = (_capabilities, _source, _destination)


def output_schema(plan: ExportPlan, source_schema: pa.Schema, stamp: Stamp | None = None) -> pa.Schema:
    """The schema a run writes for ``source_schema`` (meta columns added), or ConfigError if it would refuse it."""
    stamp = stamp or plan.meta.stamp(plan.name, dt.datetime.now(dt.timezone.utc))
    output = plan.format.layout.types.schema(stamp.schema(source_schema))
    if plan.partitioning is not None:
        plan.partitioning.check(output, plan.name)
    if (table := plan.lake_table) is not None:
        table.check_columns(output, plan.name)
        table.check_partitioning(output, plan.partitioning, plan.name)
    return output

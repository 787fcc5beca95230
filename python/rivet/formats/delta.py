"""``format: delta``: the run's Parquet parts committed to a Delta Lake log, in one commit.

The parts are written and made visible as for Parquet output; Delta readers see only
the files the log lists, so a part is visible to them only once the run commits. The
commit makes the log list exactly the parts the manifest lists (what the run added,
and what it superseded removed) in one atomic transaction, after the state commit.
A kill between the two is repaired by the next run, whose commit lists the parts of
every committed run again; a commit with nothing to change is not made, so a run is
never committed twice.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rivet.errors import ConfigError, DestinationError
from rivet.redact import redact_text

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.destinations import Destination, DestinationSpec
    from rivet.manifest import CommittedPart


def table_uri(spec: DestinationSpec) -> str:
    """The URI delta-rs opens: a local folder, or ``s3://bucket/prefix``."""
    if spec.url.startswith(("s3://", "/")):
        return spec.url
    raise ConfigError(f"destination {spec.shown}: format: delta is written to local disk or S3 for now")


def storage_options(spec: DestinationSpec) -> dict[str, str]:
    """The destination's credentials and endpoint, as delta-rs names them."""
    given = spec.storage_options
    options: dict[str, str] = {}
    names = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN"}
    for fsspec_name, delta_name in names.items():
        if given.get(fsspec_name):
            options[delta_name] = str(given[fsspec_name])
    if endpoint := given.get("endpoint_url"):
        options["AWS_ENDPOINT_URL"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    region = (given.get("client_kwargs") or {}).get("region_name")
    if region:
        options["AWS_REGION"] = str(region)
    if spec.url.startswith("s3://"):
        # Commits are atomic by a conditional put of the next log entry (If-None-Match).
        options.setdefault("AWS_CONDITIONAL_PUT", "etag")
    return options


def commit_live_parts(
    destination: Destination, schema: pa.Schema, live: list[CommittedPart], summary: dict[str, str]
) -> int:
    """Make the Delta log list exactly ``live`` (no commit when it already does); the table's version."""
    try:
        from deltalake import CommitProperties, DeltaTable, Schema
        from deltalake.exceptions import DeltaError, TableNotFoundError
        from deltalake.transaction import AddAction, create_table_with_add_actions
    except ImportError:
        from rivet.formats.tables import missing_library

        raise missing_library("delta") from None
    from deltalake._internal import RemoveAction

    uri, options = table_uri(destination.spec), storage_options(destination.spec)
    now = int(time.time() * 1000)
    commit = CommitProperties(custom_metadata=summary)
    adds = {p.name: AddAction(p.name, p.bytes, {}, now, True, json.dumps({"numRecords": p.rows})) for p in live}
    delta_schema = Schema.from_arrow(schema)
    try:
        try:
            table = DeltaTable(uri, storage_options=options)
        except TableNotFoundError:
            create_table_with_add_actions(
                uri, delta_schema, list(adds.values()), mode="error", storage_options=options, commit_properties=commit
            )
            return 0
        listed = {_relative(uri, f) for f in table.file_uris()}
        if table.schema().to_json() != delta_schema.to_json() and not (listed & adds.keys()):
            # The columns changed: a run that replaces every part replaces the schema with them.
            table.create_write_transaction(list(adds.values()), "overwrite", schema, commit_properties=commit)
            return _version_now(table)
        if table.schema().to_json() != delta_schema.to_json():
            # An appending run's new columns (on_schema_drift: evolve), in a commit of their own.
            known = {f.name for f in table.schema().fields}
            table.alter.add_columns([f for f in delta_schema.fields if f.name not in known], commit_properties=commit)
        changes: list[Any] = [a for name, a in adds.items() if name not in listed]
        changes += [RemoveAction(name, True, now) for name in sorted(listed - adds.keys())]
        if not changes:
            return int(table.version())
        table.create_write_transaction(changes, "append", schema, commit_properties=commit)
        return _version_now(table)
    except (DeltaError, OSError) as e:
        raise DestinationError(
            f"committing to the Delta table {destination.spec.shown} failed: {redact_text(str(e))}"
        ) from e


def listed_parts(destination: Destination) -> set[str] | None:
    """The names of the parts the Delta log lists; None when there is no table."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    uri = table_uri(destination.spec)
    try:
        table = DeltaTable(uri, storage_options=storage_options(destination.spec))
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as e:
        raise DestinationError(f"reading the Delta table {destination.spec.shown} failed: {redact_text(str(e))}") from e
    return {_relative(uri, f) for f in table.file_uris()}


def _version_now(table: Any) -> int:
    """The table's version after a commit through it (the object still shows the one it was read at)."""
    table.update_incremental()
    return int(table.version())


def _relative(uri: str, file_uri: str) -> str:
    prefix = uri.rstrip("/") + "/"
    return file_uri[len(prefix) :] if file_uri.startswith(prefix) else file_uri

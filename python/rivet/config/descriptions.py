"""What each key of rivet.yaml means, for the JSON Schema editors show (``rivet schema config``).

One line per key, as the README's configuration reference says it; a test holds that
every key of every model has one.
"""

from __future__ import annotations

from typing import Any

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "RivetConfig": {
        "source": "The database every export reads from.",
        "exports": "What to export: each a query or table, a mode, a format and a destination.",
        "parallel_exports": "Run the exports at once, one thread each (like --parallel-exports).",
        "parallel_export_processes": "Run each export in its own process (like --parallel-export-processes).",
        "notifications": "Webhook and Slack messages after a run.",
        "telemetry": "Spans of each run, export and chunk, and the exports' metrics, sent over OTLP.",
        "executor": "Where chunks are read: this process's threads (local) or a Dask cluster.",
        "state": "Where this config's exports keep their state in a shared state store.",
        "defaults": "Settings every export takes unless it sets its own (freshness).",
    },
    "DefaultsConfig": {
        "freshness": "Freshness limits of every export without its own.",
    },
    "TelemetryConfig": {
        "otlp_endpoint": "The OTLP/HTTP collector (http://host:4318); else the OTEL_EXPORTER_OTLP_* variables.",
        "headers": "Headers sent with every request (an API key); values are never shown.",
        "timeout_s": "Seconds to wait for the collector before giving the telemetry up (10).",
        "service_name": "The service.name of the spans and metrics (rivet).",
    },
    "FreshnessConfig": {
        "warn_after": "How old (30m, 2h, 1d) the last published run may be before rivet check --freshness warns.",
        "error_after": "How old the last published run may be before rivet check --freshness fails.",
    },
    "ServerSourceConfig": {
        "type": "postgres, mysql (MySQL and MariaDB) or sqlite.",
        "url": "A postgresql:// or mysql:// URL (a ${VAR} keeps its password out of the file).",
        "url_env": "The environment variable holding the URL.",
        "url_file": "A file holding the URL (relative to the config).",
        "host": "Host name, IP address, or a Unix socket directory.",
        "port": "Port (5432 PostgreSQL, 3306 MySQL by default).",
        "user": "The user to log in as.",
        "database": "The database.",
        "password": "The password (prefer password_env).",
        "password_env": "The environment variable holding the password.",
        "path": "SQLite: the database file (relative to the config).",
        "tls": "TLS mode, CA file and which passwords may go over an unverified connection.",
        "tuning": "Batch sizes, timeouts, throttling and retries for every export (an export's tuning overrides).",
        "read_timeout_s": "The longest the server may send nothing before the connection counts as lost.",
        "ssh": "Reach the database through an SSH bastion: host, user, key_file or key_env, known_hosts.",
        "engine": "native (default), auto or connectorx: the reader of exports.",
        "environment": "A label for people (production, replica, ...): shown in rivet plan.",
    },
    "TlsConfig": {
        "mode": "disable, prefer, require, verify-ca (with ca_file) or verify-full (default with a tls block).",
        "ca_file": "PEM file of the CA that signed the server's certificate.",
        "accept_invalid_certs": "Accept a certificate that does not chain to a trusted CA (then unverified).",
        "accept_invalid_hostnames": "Accept a certificate for another host (unverified without ca_file).",
        "allow_unverified_password": "Send cleartext, MD5 or MySQL native passwords to a server TLS has not proven.",
        "channel_binding": "prefer, require or disable: SCRAM bound to the TLS connection (PostgreSQL).",
    },
    "SshConfig": {
        "host": "The bastion's host name or address.",
        "port": "The bastion's SSH port (22).",
        "user": "The user to log in to the bastion as.",
        "key_file": "The private key file (relative to the config; ~ expands).",
        "key_env": "The environment variable holding the private key itself (instead of key_file).",
        "passphrase_env": "The environment variable holding the key's passphrase, if it has one.",
        "known_hosts": "The known_hosts file the bastion's key is checked against (~/.ssh/known_hosts).",
        "accept_new_host_key": "Trust a bastion missing from known_hosts on first use, and add it there.",
    },
    "TuningConfig": {
        "profile": "fast, balanced (default) or safe: defaults for the keys below.",
        "batch_size": "The most rows in a batch.",
        "batch_size_memory_mb": "Cut batches at this many MiB of source values (instead of batch_size).",
        "throttle_ms": "Pause between two fetches (PostgreSQL).",
        "statement_timeout_s": "Per-statement time limit on the source (0: off).",
        "lock_timeout_s": "Lock wait limit on the source (PostgreSQL; 0: off).",
        "max_retries": "Retries of a chunk or stream after its first attempt.",
        "retry_backoff_ms": "Base of the exponential backoff between retries.",
        "max_batch_memory_mb": "No batch above this many MiB (a single larger row: on_batch_memory_exceeded).",
        "on_batch_memory_exceeded": "warn (default), fail or auto_shrink, for a single row above max_batch_memory_mb.",
        "memory_threshold_mb": "While resident memory is above it, workers start no new chunk.",
        "max_value_mb": "A single text or binary value above this many MiB fails the export (0: no limit).",
    },
    "CdcConfig": {
        "initial": "snapshot: the table as of the first position under snapshot/; none (default): changes only.",
        "slot": "PostgreSQL: the logical replication slot (default rivet_<export>), made by the first run.",
        "publication": "PostgreSQL: the publication of the table (default: the slot's name), made when missing.",
        "server_id": "MySQL/MariaDB: the replica id the binary log is read as (default: derived from the name).",
        "checkpoint": "The original rivet's position file: not read; a run refuses to anchor anew while it exists.",
        "until_current": "true (default): each run reads the log to its end as the run started, then exits.",
        "max_lag_bytes": "Warn when a run starts this far behind the log's end (1GB, 500MB or bytes).",
        "commit_every_s": "Under rivet run --follow without --every: seconds between two runs (default 10).",
        "commit_every_rows": "Under write: merge: changes folded and merged per commit (default 500000).",
    },
    "ExportConfig": {
        "name": "Unique; used in file names and the state store.",
        "query": "The SQL to export.",
        "query_file": "A file holding the SQL (relative to the config, inside its folder).",
        "table": "A table to export whole: schema.Table (exact names) or SQL-quoted parts.",
        "tables": "mode: cdc: tables whose changes one slot or binlog connection reads, each to its own folder.",
        "mode": "full (default), incremental, chunked, time_window or cdc (the table's changes from the server's log).",
        "format": "parquet (default), csv, delta or iceberg.",
        "iceberg": "With format: iceberg: the catalog and the table.",
        "compression": "Parquet: zstd (default), snappy, gzip, lz4, none. CSV: none (default), gzip, zstd.",
        "compression_level": "zstd 1-22, gzip 1-9.",
        "compression_profile": "none, fast, balanced or compact (replaces compression and compression_level).",
        "max_file_size": "Rotate parts at about this size: 512MB, 1GB, 100KB or bytes.",
        "destination": "A path or URL, or a mapping (type, bucket, prefix, credentials from the environment).",
        "columns": "Per-column type overrides: decimal(p,s) or text.",
        "freshness": "How old its last published run may be: warn_after, error_after (rivet check --freshness).",
        "tuning": "This export's tuning (over the source's).",
        "cursor_column": "incremental: the column whose growth selects new rows.",
        "write": "append (default), or merge (format: delta; cdc, incremental): the table holds the rows as they are.",
        "merge_keys": "write: merge: the columns rows are matched by (default: the table's primary key).",
        "cdc": "cdc: the initial snapshot, and the slot (PostgreSQL) or server_id (MySQL) the log is read through.",
        "incremental_cursor_mode": "single_column (default) or coalesce (with cursor_fallback_column).",
        "cursor_fallback_column": "incremental, coalesce: the column used where the cursor is NULL.",
        "chunk_column": "chunked: the integer, date or timestamp column cut into ranges.",
        "chunk_by_key": "chunked: a unique indexed key (a column or a list) read in keyset ranges of chunk_size rows.",
        "chunk_size": "chunked: about this many rows per chunk.",
        "chunk_count": "chunked: about this many chunks (instead of chunk_size).",
        "chunk_by_days": "chunked: calendar ranges of this many days (date or timestamp column).",
        "chunk_dense": "chunked: ranges of exactly chunk_size rows (reads the key once).",
        "chunk_strategy": "estimate (default: from statistics) or count (reads the key to balance chunks).",
        "parallel": "Worker connections for chunked, or for full with table: (page ranges on PostgreSQL).",
        "keyset_incremental": "chunked with chunk_by_key: each run reads only the keys after the highest one "
        "published before (append-only tables whose new rows get higher keys).",
        "chunk_checkpoint": "chunked: keep each chunk's progress, so --resume continues an interrupted run.",
        "checkpoint_every_s": "With chunk_checkpoint: publish a worker's part once it has held its chunks this long.",
        "chunk_max_attempts": "Attempts per chunk (overrides tuning.max_retries).",
        "time_column": "time_window: the date, timestamp or unix-time column.",
        "time_column_type": "time_window: timestamp (default) or unix.",
        "days_window": "time_window: rows of the last this many days (UTC).",
        "snapshot": "consistent: every worker reads one snapshot (PostgreSQL).",
        "wave": "A scheduling hint, accepted for compatibility.",
        "parallel_safe": "A scheduling hint, accepted for compatibility.",
        "source_group": "rivet plan warns when heavy exports of one group share a wave.",
        "reconcile_required": "rivet plan puts this export last in its wave.",
        "keep_superseded_parts": "full and chunked: leave the parts a new run replaces.",
        "meta_columns": "Columns added to every row: _rivet_exported_at, _rivet_row_hash.",
        "skip_empty": "A run that reads no rows publishes nothing and keeps the last output.",
        "quality": "Gates on the rows written (counts, NULL ratios, unique columns).",
        "parquet": "Parquet layout: row groups, page size, statistics, dictionary.",
        "on_schema_drift": "warn (default), continue, fail or evolve (delta, iceberg) when the columns change.",
        "shape_drift_warn_factor": "Warn when a text value grows this many times wider than before (0: off).",
        "partition_by": "A column (or a list) whose values name Hive-style col=value/ folders.",
        "partition_granularity": "year, month, day (default) or hour, for date and timestamp partition columns.",
    },
    "IcebergConfig": {
        "catalog_url": "SQL catalog (sqlite:///file, postgresql://...) or REST catalog (https://...).",
        "namespace": "The table's namespace (default rivet).",
        "table": "The table's name (default: the export's).",
        "catalog_properties": "More catalog settings, passed on as is.",
    },
    "DestinationConfig": {
        "type": "local, s3, gcs, azure, memory or stdout.",
        "url": "Any fsspec URL (instead of type).",
        "path": "A local (or memory) path, relative to the config.",
        "bucket": "S3 or GCS bucket (Azure: the container).",
        "container": "Azure container.",
        "prefix": "The folder under the bucket; {date}, {export} and a final {partition} expand.",
        "region": "S3 region.",
        "endpoint": "An S3- or GCS-compatible server (MinIO, R2, ...).",
        "access_key_env": "S3: the environment variable holding the access key.",
        "secret_key_env": "S3: the environment variable holding the secret key.",
        "session_token_env": "S3: the environment variable holding a session token.",
        "aws_profile": "S3: a profile of the AWS configuration.",
        "allow_anonymous": "S3 or GCS without credentials.",
        "credentials_file": "GCS: a service account file.",
        "account_name": "Azure storage account.",
        "account_key_env": "Azure: the environment variable holding the account key.",
        "sas_token_env": "Azure: the environment variable holding a SAS token.",
        "storage_options": "Passed to fsspec as is.",
    },
    "MetaColumnsConfig": {
        "exported_at": "Add _rivet_exported_at: when the run started (UTC).",
        "row_hash": "Add _rivet_row_hash: a 64-bit hash of each row's values (true), or of the listed columns.",
    },
    "QualityConfig": {
        "row_count_min": "Fail (publishing nothing) below this many rows.",
        "row_count_max": "Fail above this many rows.",
        "null_ratio_max": "Per column: the highest share of NULLs allowed (0 to 1).",
        "unique_columns": "Columns whose values must be unique.",
        "unique_max_entries": "The most values tracked per unique column.",
    },
    "ParquetConfig": {
        "row_group_strategy": "auto (default), fixed_memory or fixed_rows.",
        "row_group_rows": "fixed_rows: rows per row group.",
        "target_row_group_mb": "About this many MiB of Arrow data per row group.",
        "max_row_group_mb": "No row group above this many MiB.",
        "data_page_size_kb": "Parquet data page size.",
        "statistics": "Write column statistics (default true).",
        "dictionary": "auto (text columns whose first values repeat), true or false.",
        "uuid": "native: Parquet's UUID type (16 bytes); string (default): the text.",
        "json": "native: Parquet's JSON type; string (default): plain text.",
    },
    "NotificationTarget": {
        "on": "When to send: failure (default), success, quality, schema_change, degraded.",
    },
    "SlackNotification": {
        "on": "When to send: failure (default), success, quality, schema_change, degraded.",
        "webhook_url": "The Slack incoming-webhook URL (prefer webhook_url_env).",
        "webhook_url_env": "The environment variable holding the webhook URL.",
    },
    "WebhookNotification": {
        "on": "When to send: failure (default), success, quality, schema_change, degraded.",
        "url": "The URL that receives a JSON POST (prefer url_env).",
        "url_env": "The environment variable holding the URL.",
    },
    "NotificationsConfig": {
        "slack": "A Slack incoming webhook.",
        "webhook": "Any URL that takes a JSON POST.",
    },
    "ExecutorConfig": {
        "type": "local (default: this process's threads) or dask.",
        "address": "dask: the scheduler's address (tcp://host:8786 or tls://...).",
        "allow_plaintext": "Use a tcp:// scheduler although the exports have credentials.",
    },
    "StateConfig": {
        "namespace": "Keep this config's state under this name (instead of one derived from each export).",
    },
}

# One text per source key, for the server and the file forms of ``source`` alike.
DESCRIPTIONS["FileSourceConfig"] = DESCRIPTIONS["ServerSourceConfig"]


def described(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (pydantic's, of RivetConfig) with every key described."""
    models = {"RivetConfig": schema, **schema.get("$defs", {})}
    for model, keys in DESCRIPTIONS.items():
        properties = models.get(model, {}).get("properties", {})
        for key, text in keys.items():
            if key in properties:
                properties[key].setdefault("description", text)
    return schema

"""The state store's schema, one migration per version (``PRAGMA user_version``).

Version 4 adds leases (one writer per export), the resolved destination of a run,
and the boundary rows of appending exports (the rows at the last cursor value,
skipped by the next run so each row version is exported once). Version 5 keeps the
last published schema of each export and the widest value seen in each of its text
and binary columns (schema and shape drift), and each run's journal of events. Version 6 puts every row in a
namespace (configs sharing one store keep apart exports of the same name; rows of
earlier versions are unclaimed, ``''``, until their export claims them) and keeps the
identity each export's state was written for, and each chunk's bounds (a resumed run
makes its SQL again from them, never running SQL text from the store). Version 7 keeps the
log position of each change-capture export (``mode: cdc``): where its next run reads from, and
the slot or replica id it was taken with. Later versions add each run's retries, then how long
the source spent serving its reads.
"""

from __future__ import annotations

# Each entry moves the schema one version forward; never edit a released step.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE export_runs (
        run_id       TEXT PRIMARY KEY,
        export_name  TEXT NOT NULL,
        mode         TEXT NOT NULL,
        status       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        rows         INTEGER NOT NULL DEFAULT 0,
        files        INTEGER NOT NULL DEFAULT 0,
        bytes        INTEGER NOT NULL DEFAULT 0,
        duration_ms  INTEGER,
        peak_rss_mb  REAL,
        engine       TEXT,
        fingerprint  TEXT,
        error        TEXT
    );
    CREATE INDEX export_runs_by_export ON export_runs (export_name, started_at);
    CREATE TABLE file_log (
        id           INTEGER PRIMARY KEY,
        run_id       TEXT NOT NULL REFERENCES export_runs (run_id),
        export_name  TEXT NOT NULL,
        url          TEXT NOT NULL,
        rows         INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX file_log_by_export ON file_log (export_name, created_at);
    """,
    """
    CREATE TABLE chunk_runs (
        run_id       TEXT PRIMARY KEY,
        export_name  TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        part_stem    TEXT NOT NULL,
        status       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX chunk_runs_by_export ON chunk_runs (export_name, status);
    CREATE TABLE chunk_tasks (
        run_id       TEXT NOT NULL REFERENCES chunk_runs (run_id) ON DELETE CASCADE,
        chunk_index  INTEGER NOT NULL,
        query        TEXT NOT NULL,
        label        TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        rows         INTEGER,
        parts        TEXT,
        last_error   TEXT,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (run_id, chunk_index)
    );
    CREATE TABLE cursors (
        export_name  TEXT PRIMARY KEY,
        value        TEXT NOT NULL,
        sql_literal  TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE run_aggregates (
        id            INTEGER PRIMARY KEY,
        started_at    TEXT NOT NULL,
        finished_at   TEXT NOT NULL,
        config_path   TEXT,
        parallel_mode TEXT NOT NULL,
        exit_code     INTEGER NOT NULL,
        exports       INTEGER NOT NULL,
        succeeded     INTEGER NOT NULL,
        failed        INTEGER NOT NULL,
        rows          INTEGER NOT NULL,
        bytes         INTEGER NOT NULL,
        summary       TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE leases (
        export_name  TEXT PRIMARY KEY,
        run_id       TEXT NOT NULL,
        holder       TEXT NOT NULL,
        acquired_at  TEXT NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    ALTER TABLE chunk_runs ADD COLUMN destination TEXT;
    ALTER TABLE export_runs ADD COLUMN destination TEXT;
    ALTER TABLE export_runs ADD COLUMN part_stem TEXT;
    ALTER TABLE export_runs ADD COLUMN published_at TEXT;
    UPDATE export_runs SET published_at = finished_at WHERE status = 'success';
    CREATE TABLE boundaries (
        export_name  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        value        TEXT NOT NULL,
        sql_literal  TEXT NOT NULL,
        strict       INTEGER NOT NULL DEFAULT 0,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (export_name, scope)
    );
    CREATE TABLE boundary_rows (
        export_name  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        row_hash     INTEGER NOT NULL,
        PRIMARY KEY (export_name, scope, row_hash)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE export_schemas (
        export_name  TEXT PRIMARY KEY,
        columns_json TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE export_shapes (
        export_name  TEXT NOT NULL,
        column_name  TEXT NOT NULL,
        max_bytes    INTEGER NOT NULL,
        PRIMARY KEY (export_name, column_name)
    ) WITHOUT ROWID;
    CREATE TABLE run_journals (
        run_id       TEXT PRIMARY KEY,
        export_name  TEXT NOT NULL,
        finished_at  TEXT NOT NULL,
        events_json  TEXT NOT NULL
    );
    CREATE INDEX run_journals_by_export ON run_journals (export_name, finished_at);
    """,
    """
    ALTER TABLE export_runs ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
    DROP INDEX export_runs_by_export;
    CREATE INDEX export_runs_by_key ON export_runs (namespace, export_name, started_at);
    ALTER TABLE file_log ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
    DROP INDEX file_log_by_export;
    CREATE INDEX file_log_by_key ON file_log (namespace, export_name, created_at);
    ALTER TABLE chunk_runs ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
    DROP INDEX chunk_runs_by_export;
    CREATE INDEX chunk_runs_by_key ON chunk_runs (namespace, export_name, status);
    ALTER TABLE run_journals ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
    ALTER TABLE chunk_tasks ADD COLUMN bounds TEXT;
    DROP INDEX run_journals_by_export;
    CREATE INDEX run_journals_by_key ON run_journals (namespace, export_name, finished_at);
    CREATE TABLE cursors_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        value        TEXT NOT NULL,
        sql_literal  TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (namespace, export_name)
    );
    INSERT INTO cursors_v6 (export_name, value, sql_literal, run_id, updated_at)
        SELECT export_name, value, sql_literal, run_id, updated_at FROM cursors;
    DROP TABLE cursors;
    ALTER TABLE cursors_v6 RENAME TO cursors;
    CREATE TABLE leases_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        holder       TEXT NOT NULL,
        acquired_at  TEXT NOT NULL,
        heartbeat_at REAL NOT NULL,
        PRIMARY KEY (namespace, export_name)
    );
    INSERT INTO leases_v6 (export_name, run_id, holder, acquired_at, heartbeat_at)
        SELECT export_name, run_id, holder, acquired_at, heartbeat_at FROM leases;
    DROP TABLE leases;
    ALTER TABLE leases_v6 RENAME TO leases;
    CREATE TABLE boundaries_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        value        TEXT NOT NULL,
        sql_literal  TEXT NOT NULL,
        strict       INTEGER NOT NULL DEFAULT 0,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (namespace, export_name, scope)
    );
    INSERT INTO boundaries_v6 (export_name, scope, value, sql_literal, strict, run_id, updated_at)
        SELECT export_name, scope, value, sql_literal, strict, run_id, updated_at FROM boundaries;
    DROP TABLE boundaries;
    ALTER TABLE boundaries_v6 RENAME TO boundaries;
    CREATE TABLE boundary_rows_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        row_hash     INTEGER NOT NULL,
        PRIMARY KEY (namespace, export_name, scope, row_hash)
    ) WITHOUT ROWID;
    INSERT INTO boundary_rows_v6 (export_name, scope, row_hash) SELECT export_name, scope, row_hash FROM boundary_rows;
    DROP TABLE boundary_rows;
    ALTER TABLE boundary_rows_v6 RENAME TO boundary_rows;
    CREATE TABLE export_schemas_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        columns_json TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (namespace, export_name)
    );
    INSERT INTO export_schemas_v6 (export_name, columns_json, run_id, updated_at)
        SELECT export_name, columns_json, run_id, updated_at FROM export_schemas;
    DROP TABLE export_schemas;
    ALTER TABLE export_schemas_v6 RENAME TO export_schemas;
    CREATE TABLE export_shapes_v6 (
        namespace    TEXT NOT NULL DEFAULT '',
        export_name  TEXT NOT NULL,
        column_name  TEXT NOT NULL,
        max_bytes    INTEGER NOT NULL,
        PRIMARY KEY (namespace, export_name, column_name)
    ) WITHOUT ROWID;
    INSERT INTO export_shapes_v6 (export_name, column_name, max_bytes)
        SELECT export_name, column_name, max_bytes FROM export_shapes;
    DROP TABLE export_shapes;
    ALTER TABLE export_shapes_v6 RENAME TO export_shapes;
    CREATE TABLE export_identities (
        namespace    TEXT NOT NULL,
        export_name  TEXT NOT NULL,
        source       TEXT NOT NULL,
        target       TEXT NOT NULL,
        cursor       TEXT,
        destination  TEXT NOT NULL,
        bound_at     TEXT NOT NULL,
        PRIMARY KEY (namespace, export_name)
    );
    """,
    """
    CREATE TABLE change_positions (
        namespace    TEXT NOT NULL,
        export_name  TEXT NOT NULL,
        phase        TEXT NOT NULL,
        anchor       TEXT NOT NULL,
        position     TEXT,
        run_id       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (namespace, export_name)
    );
    """,
    """
    ALTER TABLE export_runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    """,
    # How long the source spent serving each run's reads: summed, and its longest single read.
    """
    ALTER TABLE export_runs ADD COLUMN read_s DOUBLE PRECISION;
    ALTER TABLE export_runs ADD COLUMN longest_read_s DOUBLE PRECISION;
    """,
]

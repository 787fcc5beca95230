"""Config validation: every rejected config names its key and says how to fix it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rivet.config import load_config, parse_config
from rivet.errors import ConfigError
from tests.outputs import run_rivet

PG = "source:\n  type: postgres\n  url: postgresql://u@h/db\n"
EXPORT = "  - name: a\n    query: SELECT 1\n    destination: out\n"


def check(text: str, tmp_path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(textwrap.dedent(text), base_dir=tmp_path or Path("."))
    return str(err.value)


# The negative matrix of spec §3.10 (g01-g18), rejected as the newest reference release does.
NEGATIVE = {
    "g01 url + url_env": (
        "source: {type: postgres, url: 'postgresql://u@h/d', url_env: DB}\nexports:\n" + EXPORT,
        "source: specify exactly one of url, url_env or url_file",
    ),
    "g02 url + structured": (
        "source: {type: postgres, url: 'postgresql://u@h/d', host: h, user: u, database: d}\nexports:\n" + EXPORT,
        "source: use either a URL (url, url_env, url_file) or structured fields",
    ),
    "g03 password + password_env": (
        "source: {type: postgres, host: h, user: u, database: d, password: x, password_env: P}\nexports:\n" + EXPORT,
        "source: set password or password_env, not both",
    ),
    "g04 query + query_file": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    query_file: q.sql\n    destination: out\n",
        "exports[0] (a): specify exactly one of query, query_file, table or tables",
    ),
    "g05 query + table": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    table: t\n    destination: out\n",
        "exports[0] (a): specify exactly one of query, query_file, table or tables",
    ),
    "g06 no source": ("exports:\n" + EXPORT, "source: missing required key"),
    "g07 empty exports": (PG + "exports: []\n", "at least one export must be defined"),
    "g08 structured without host": (
        "source: {type: postgres, user: u, database: d}\nexports:\n" + EXPORT,
        "source: structured config requires 'host'",
    ),
    "g09 structured without user": (
        "source: {type: postgres, host: h, database: d}\nexports:\n" + EXPORT,
        "source: structured config requires 'user'",
    ),
    "g10 unknown top-level key": (PG + "exprots: []\nexports:\n" + EXPORT, "exprots: unknown key 'exprots'"),
    "g11 unknown export key": (
        PG + "exports:\n  - name: a\n    querry: SELECT 1\n    query: SELECT 1\n    destination: out\n",
        "exports[0] (a).querry: unknown key 'querry' (did you mean 'query'?)",
    ),
    "g12 unknown mode": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    mode: gibberish\n    destination: out\n",
        "exports[0] (a).mode: unknown value 'gibberish'; expected 'full', 'incremental', 'chunked', "
        "'time_window' or 'cdc'",
    ),
    "g13 unknown format": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    format: avro\n    destination: out\n",
        "exports[0] (a).format: unknown value 'avro'; expected 'parquet', 'csv', 'delta' or 'iceberg'",
    ),
    "g14 tuning key at export root": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    batch_size: 5000\n    destination: out\n",
        "exports[0] (a): batch_size must be nested under tuning:",
    ),
    "g15 malformed YAML": (PG + "exports: [\n", "malformed YAML at line"),
    "g16 query_file traversal": (
        PG + "exports:\n  - name: a\n    query_file: ../../../../etc/passwd\n    destination: out\n",
        "query_file must be a relative path inside the config directory (no '..')",
    ),
    "g17 incremental via table without cursor": (
        PG + "exports:\n  - name: a\n    table: orders\n    mode: incremental\n    destination: out\n",
        "exports[0] (a): incremental mode requires cursor_column",
    ),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_negative_matrix(case: str) -> None:
    text, expected = NEGATIVE[case]
    assert expected in check(text)


def test_g18_chunked_via_table_without_chunk_column_is_accepted() -> None:
    text = (
        PG
        + "exports:\n  - name: a\n    table: orders\n    mode: chunked\n    wave: 2\n"
        + "    parallel_safe: true\n    destination: out\n"
    )
    loaded = parse_config(text, base_dir=Path("."))
    assert loaded.config.exports[0].mode == "chunked"


MORE = {
    "chunked without column": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    mode: chunked\n    destination: out\n",
        "chunked mode requires chunk_column",
    ),
    "chunk_count with dense": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    mode: chunked\n    chunk_column: id\n"
        "    chunk_count: 4\n    chunk_dense: true\n    destination: out\n",
        "chunk_count excludes chunk_dense and chunk_by_days",
    ),
    "chunk_size zero": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    mode: chunked\n    chunk_column: id\n"
        "    chunk_size: 0\n    destination: out\n",
        "exports[0] (a).chunk_size: Input should be greater than or equal to 1",
    ),
    "key of another mode": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    cursor_column: id\n    destination: out\n",
        "cursor_column require(s) mode: incremental (this export has mode: full)",
    ),
    "coalesce without fallback": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    mode: incremental\n    cursor_column: u\n"
        "    incremental_cursor_mode: coalesce\n    destination: out\n",
        "coalesce requires cursor_fallback_column",
    ),
    "time_window without days": (
        PG
        + "exports:\n  - name: a\n    query: SELECT 1\n    mode: time_window\n    time_column: t\n"
        + "    destination: out\n",
        "time_window mode requires time_column and days_window",
    ),
    "duplicate export names": (PG + "exports:\n" + EXPORT + EXPORT, "duplicate export name 'a'"),
    "bad export name": (
        PG + "exports:\n  - name: 'a b'\n    query: SELECT 1\n    destination: out\n",
        "exports[0] (a b).name: String should match pattern",
    ),
    "bad max_file_size": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    max_file_size: 12XB\n    destination: out\n",
        "unknown size unit 'XB'",
    ),
    "level for snappy": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    compression: snappy\n    compression_level: 3\n"
        "    destination: out\n",
        "compression_level applies only to zstd and gzip, not snappy",
    ),
    "zstd level out of range": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    compression_level: 23\n    destination: out\n",
        "compression_level for zstd must be between 1 and 22, got 23",
    ),
    "csv with snappy": (
        PG
        + "exports:\n  - name: a\n    query: SELECT 1\n    format: csv\n    compression: snappy\n"
        + "    destination: out\n",
        "csv output supports compression gzip, zstd or none, not snappy",
    ),
    "unknown override type": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    columns: {x: varchar2}\n    destination: out\n",
        "x: unknown type 'varchar2'",
    ),
    "decimal override too wide": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    columns: {x: 'decimal(80,2)'}\n    destination: out\n",
        "x: decimal(80,2) needs 1 <= precision <= 76",
    ),
    "batch_size and memory target": (
        "source:\n  type: postgres\n  url: postgresql://u@h/db\n  tuning: {batch_size: 10, batch_size_memory_mb: 8}\n"
        "exports:\n" + EXPORT,
        "source.tuning: set batch_size or batch_size_memory_mb, not both",
    ),
    "tuning key under source": (
        "source:\n  type: postgres\n  url: postgresql://u@h/db\n  statement_timeout_s: 5\nexports:\n" + EXPORT,
        "source: statement_timeout_s must be nested under tuning:",
    ),
    "unknown tuning key": (
        "source:\n  type: postgres\n  url: postgresql://u@h/db\n  tuning: {trottle_ms: 5}\nexports:\n" + EXPORT,
        "source.tuning.trottle_ms: unknown key 'trottle_ms' (did you mean 'throttle_ms'?)",
    ),
    "unknown profile": (
        "source:\n  type: postgres\n  url: postgresql://u@h/db\n  tuning: {profile: turbo}\nexports:\n" + EXPORT,
        "source.tuning.profile: unknown value 'turbo'; expected 'fast', 'balanced' or 'safe'",
    ),
    "unknown tls mode": (
        "source:\n  type: postgres\n  url: postgresql://u@h/db\n  tls: {mode: sometimes}\nexports:\n" + EXPORT,
        "source.tls.mode: unknown value 'sometimes'",
    ),
    "unknown source type": (
        "source: {type: cassandra, url: x}\nexports:\n" + EXPORT,
        "source.type: unknown value 'cassandra'; expected 'postgres', 'mysql' or 'sqlite'",
    ),
    "no connection": ("source: {type: postgres}\nexports:\n" + EXPORT, "source: no connection given"),
    "sqlite with host": ("source: {type: sqlite, host: h}\nexports:\n" + EXPORT, "a sqlite source takes path"),
    "sqlite with tls": (
        "source: {type: sqlite, path: x.db, tls: {}}\nexports:\n" + EXPORT,
        "source: tls does not apply",
    ),
    "server with path": ("source: {type: postgres, path: x.db}\nexports:\n" + EXPORT, "path applies only to a sqlite"),
    "no source type": ("source: {url: 'postgresql://u@h/d'}\nexports:\n" + EXPORT, "source.type: missing required key"),
    "sqlite key typo": (
        "source: {type: sqlite, pth: x.db}\nexports:\n" + EXPORT,
        "source.pth: unknown key 'pth' (did you mean 'path'?)",
    ),
    "server key typo": (
        "source: {type: mysql, url: 'mysql://u@h/d', read_timout_s: 5}\nexports:\n" + EXPORT,
        "source.read_timout_s: unknown key 'read_timout_s' (did you mean 'read_timeout_s'?)",
    ),
    "s3 without bucket": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    destination: {type: s3, prefix: p}\n",
        "exports[0] (a).destination: a s3 destination requires 'bucket'",
    ),
    "s3 half key pair": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    destination: {type: s3, bucket: b, access_key_env: K}\n",
        "set both access_key_env and secret_key_env, or neither",
    ),
    "destination typo": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    destination: {pth: out}\n",
        "exports[0] (a).destination.pth: unknown key 'pth' (did you mean 'path'?)",
    ),
    "destination of a wrong kind": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    destination: 5\n",
        "exports[0] (a).destination: expected a path or URL string, or a mapping of keys",
    ),
    "missing destination": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n",
        "exports[0] (a).destination: missing required key",
    ),
    "top level is a list": ("- a\n- b\n", "expected a mapping with 'source' and 'exports'"),
    "a key given twice": (
        PG + "exports:\n  - name: a\n    query: SELECT 1\n    query: SELECT 2\n    destination: out\n",
        "duplicate key 'query' at line 7: YAML would silently keep the last",
    ),
    "aliases that multiply": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True))
        + PG
        + "exports:\n"
        + EXPORT,
        "expands to more than 100,000 values",
    ),
}


@pytest.mark.parametrize("case", sorted(MORE))
def test_more_rejections(case: str) -> None:
    text, expected = MORE[case]
    assert expected in check(text)


def test_variables_expand_in_values_not_in_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVET_T_DB", "postgresql://u@h/db")
    text = "source:\n  type: postgres\n  url: ${RIVET_T_DB}  # ${UNSET_IN_A_COMMENT}\nexports:\n" + EXPORT
    loaded = parse_config(text, base_dir=Path("."))
    assert loaded.config.source.url == "postgresql://u@h/db"


def test_unset_variable_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVET_T_UNSET", raising=False)
    text = "source:\n  type: postgres\n  url: ${RIVET_T_UNSET}\nexports:\n" + EXPORT
    assert "source.url: environment variable RIVET_T_UNSET is not set" in check(text)


def test_params_win_over_environment_and_dollar_dollar_is_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVET_T_Q", "from env")
    text = PG + "exports:\n  - name: a\n    query: \"SELECT '${RIVET_T_Q}', '$${KEEP}'\"\n    destination: out\n"
    loaded = parse_config(text, base_dir=Path("."), params={"RIVET_T_Q": "from param"})
    assert loaded.config.exports[0].query == "SELECT 'from param', '${KEEP}'"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_a_complete_valid_config_loads(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT 1 AS x")
    (tmp_path / "rivet.yaml").write_text(
        textwrap.dedent(
            """
            source:
              type: postgres
              host: localhost
              port: 5432
              user: app
              database: shop
              password_env: SHOP_PW
              tls: {mode: verify-full, ca_file: ca.pem}
              tuning: {profile: safe, lock_timeout_s: 5}
            exports:
              - name: orders
                query_file: q.sql
                format: csv
                compression: gzip
                compression_level: 6
                max_file_size: 512MB
                columns: {amount: "decimal(20,4)", addr: text}
                tuning: {batch_size: 5000}
                destination: {type: s3, bucket: b, prefix: "exports/{export}/{date}", region: eu-west-1}
            """
        )
    )
    loaded = load_config(tmp_path / "rivet.yaml")
    assert loaded.export("orders").compression == "gzip"
    with pytest.raises(ConfigError, match=r"no export named 'order' .*did you mean 'orders'"):
        loaded.export("order")


def test_a_password_in_the_config_is_never_shown() -> None:
    loaded = parse_config(
        "source: {type: postgres, host: h, user: u, database: d, password: 'hunter2-x'}\nexports:\n" + EXPORT,
        base_dir=Path("."),
    )
    assert "hunter2-x" not in repr(loaded) + str(loaded.config.source.model_dump())
    assert loaded.config.source.password is not None
    assert loaded.config.source.password.get_secret_value() == "hunter2-x"


def test_a_default_stands_in_for_an_unset_or_empty_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVET_T_CAP", raising=False)
    monkeypatch.setenv("RIVET_T_EMPTY", "")
    monkeypatch.setenv("RIVET_T_SET", "zstd")
    text = PG + (
        "exports:\n  - name: a\n    query: SELECT ${RIVET_T_CAP:-64}, '${RIVET_T_EMPTY:-x}'\n"
        "    compression: ${RIVET_T_SET:-gzip}\n    destination: out\n"
    )
    export = parse_config(text, base_dir=Path(".")).config.exports[0]
    assert export.query == "SELECT 64, 'x'" and export.compression == "zstd"


def test_variables_in_a_query_file_expand_like_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from rivet.plan.export import build_plan

    monkeypatch.setenv("RIVET_T_SCHEMA", "sales")
    sqlite3.connect(tmp_path / "db.sqlite").close()
    (tmp_path / "q.sql").write_text("SELECT * FROM ${RIVET_T_SCHEMA}.orders WHERE id < ${MAX_ID} AND s = '$${x}'")
    (tmp_path / "rivet.yaml").write_text(
        "source: {type: sqlite, path: db.sqlite}\nexports:\n  - {name: a, query_file: q.sql, destination: out}\n"
    )
    loaded = load_config(tmp_path / "rivet.yaml", params={"MAX_ID": "10"})
    assert build_plan(loaded, loaded.export("a")).query == "SELECT * FROM sales.orders WHERE id < 10 AND s = '${x}'"
    loaded = load_config(tmp_path / "rivet.yaml")
    with pytest.raises(ConfigError, match=r"query_file q.sql: environment variable MAX_ID is not set"):
        build_plan(loaded, loaded.export("a"))


def test_config_only_check_needs_no_server_and_no_environment(tmp_path: Path) -> None:
    import json
    import subprocess

    good = tmp_path / "good.yaml"
    good.write_text(
        "source: {type: postgres, url_env: RIVET_T_NOT_SET_URL}\n"
        "exports:\n  - name: a\n    query: SELECT ${RIVET_T_NOT_SET_MAX}\n    destination: s3://b/${RIVET_T_BUCKET:-x}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "source: {type: postgres, url: postgresql://h/db}\nexports:\n  - {name: a, query: x, destinaton: o}\n"
    )

    def check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_rivet("check", "-c", str(path), "--config-only", *extra)

    ok = check(good)
    assert ok.returncode == 0, ok.stderr
    assert "valid, 1 export(s): a" in ok.stdout and "${RIVET_T_NOT_SET_MAX}" in ok.stderr
    doc = json.loads(check(good, "--json").stdout)
    assert doc == {
        "config": str(good),
        "valid": True,
        "exports": ["a"],
        "problems": {},
        "unset_variables": ["RIVET_T_NOT_SET_MAX"],
    }
    failed = check(bad)
    assert failed.returncode == 2
    assert "exports[0] (a).destinaton: unknown key 'destinaton' (did you mean 'destination'?)" in failed.stderr


def test_the_original_azure_keys_map_to_the_container_and_a_sas_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from rivet.config.connection import DestinationConfig
    from rivet.storage.destinations import resolve_destination

    monkeypatch.setenv("RIVET_T_SAS", "sv=2024&sig=abc")
    dest = DestinationConfig(type="azure", bucket="landing", account_name="acct", sas_token_env="RIVET_T_SAS",
                             prefix="mysql/{date}/")  # fmt: skip
    spec = resolve_destination(dest, Path("."), "users", dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    assert spec.url == "abfs://landing/mysql/2026-01-02"
    assert spec.storage_options == {"account_name": "acct", "sas_token": "sv=2024&sig=abc"}
    text = PG.replace("postgres\n", "postgres\n  environment: production\n") + (
        "exports:\n  - name: a\n    query: SELECT 1\n    destination: {type: s3, bucket: b, sas_token_env: X}\n"
    )
    message = check(text)
    assert "sas_token_env applies to an azure destination" in message and "environment" not in message


def test_a_compression_profile_wins_over_a_codec_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from rivet.plan.export import build_plan

    text = PG + (
        "exports:\n  - name: a\n    query: SELECT 1\n    compression: gzip\n    compression_level: 3\n"
        "    compression_profile: compact\n    destination: out\n"
    )
    with caplog.at_level("WARNING", logger="rivet"):
        loaded = parse_config(text, base_dir=Path("."))
    assert "compression_profile compact replaces compression and compression_level" in caplog.text
    fmt = build_plan(loaded, loaded.export("a")).format
    assert (fmt.compression, fmt.level) == ("zstd", 9)


def test_config_only_check_needs_no_destination_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVET_T_KEY", raising=False)
    monkeypatch.delenv("RIVET_T_SECRET", raising=False)
    text = PG + (
        "exports:\n  - name: a\n    query: SELECT 1\n"
        "    destination: {type: s3, bucket: b, access_key_env: RIVET_T_KEY, secret_key_env: RIVET_T_SECRET}\n"
    )
    assert parse_config(text, base_dir=Path("."), offline=True).config.exports[0].name == "a"


@pytest.mark.parametrize(
    ("key", "advice"),
    [
        ("chunk_size_memory_mb: 64", "chunk_size_memory_mb: use chunk_size (rows)"),
        ("split: 4", "split: use max_file_size to rotate parts"),
        ("verify: size", "verify: use rivet run --validate"),
    ],
)
def test_keys_of_the_original_that_rivet_does_not_take_say_what_to_use(key: str, advice: str) -> None:
    assert advice in check(PG + f"exports:\n  - name: a\n    query: SELECT 1\n    {key}\n    destination: out\n")


def test_the_original_tools_slack_notifications_load_with_yaml_1_2_booleans() -> None:
    # YAML 1.1 would read the key `on` as True, as it would read `no` as false.
    text = PG + "notifications:\n  slack:\n    webhook_url_env: X\n    on: [failure, schema_change]\nexports:\n"
    loaded = parse_config(text + EXPORT.replace("name: a", "name: no"), base_dir=Path("."), offline=True)
    assert loaded.config.exports[0].name == "no"
    assert loaded.config.notifications is not None and loaded.config.notifications.slack is not None
    assert loaded.config.notifications.slack.on == ["failure", "schema_change"]
    assert "exactly one of webhook_url or webhook_url_env" in check(
        PG + "notifications: {slack: {}}\nexports:\n" + EXPORT
    )


CDC = "    table: public.t\n    mode: cdc\n    destination: out\n"


@pytest.mark.parametrize(
    ("export", "expected"),
    [
        ("    query: SELECT 1\n    mode: cdc\n    destination: out\n", "mode: cdc captures the changes of one table"),
        (
            "    table: t\n    cdc: {slot: s}\n    destination: out\n",
            "cdc: requires mode: cdc (this export has mode: full)",
        ),
        (CDC + "    cdc: {until_current: false}\n", "until_current: false (streaming without end) is not supported"),
        (CDC + "    cdc: {capture_instance: dbo_t}\n", "capture_instance: SQL Server change tables"),
        (CDC + "    cdc: {rollover: 1000}\n", "rollover: use max_file_size"),
        (CDC + "    cdc: {slot: Bad-Slot}\n", "exports[0] (a).cdc.slot"),
        (CDC + "    cdc: {initial: always}\n", "expected 'snapshot' or 'none'"),
        (CDC + "    format: delta\n", "format: delta with mode: cdc takes write: merge"),
        (CDC + "    format: iceberg\n", "format: iceberg with mode: cdc takes write: merge"),
        (CDC + "    write: merge\n", "write: merge needs format: delta"),
        (CDC + "    merge_keys: [id]\n", "merge_keys requires write: merge"),
        (
            CDC + "    format: delta\n    write: merge\n    partition_by: id\n",
            "partition_by does not apply to mode: cdc",
        ),
        (
            "    table: t\n    format: delta\n    write: merge\n    destination: out\n",
            "applies to mode: cdc and incremental, not full",
        ),
        (CDC + "    parallel: 2\n", "parallel does not apply to mode: cdc"),
        ("    tables: [a, b]\n    destination: out\n", "for mode: full give each table its own export"),
        ("    tables: [a, b, a]\n    mode: cdc\n    destination: out\n", "tables: lists a more than once"),
        ("    tables: []\n    mode: cdc\n    destination: out\n", "tables: lists no table"),
        (
            "    tables: [a, 'b c']\n    mode: cdc\n    destination: out\n",
            "tables: 'b c' is not a plain name or schema.name",
        ),
        (
            "    tables: [a, b]\n    mode: cdc\n    format: delta\n    write: merge\n    destination: out\n",
            "write: merge takes one table per export",
        ),
        ("    tables: [a]\n    table: b\n    mode: cdc\n    destination: out\n", "exactly one of query"),
    ],
)
def test_change_capture_configs_are_refused_with_what_to_use(export: str, expected: str) -> None:
    assert expected in check(PG + "exports:\n  - name: a\n" + export)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PG + "exports:\n" + EXPORT + "    tuning: {adaptive: true}\n",
            "adaptive: rivet does not vary its connections",
        ),
        (PG + "  tuning: {min_parallel: 2}\nexports:\n" + EXPORT, "min_parallel: rivet does not vary"),
        (PG + "exports:\n" + EXPORT + "load:\n  target: bigquery\n", "load: rivet writes files; load them"),
        ("source: {type: mssql, url: 'mssql://h/db'}\nexports:\n" + EXPORT, "SQL Server is not a source rivet reads"),
        ("source: {type: mongo, url: 'mongodb://h/db'}\nexports:\n" + EXPORT, "MongoDB is not a source rivet reads"),
        (PG + "exports:\n" + EXPORT + "    meta_columns: {row_hash: [id, id]}\n", "row_hash lists a column more"),
    ],
)
def test_the_original_tools_newer_keys_are_refused_with_what_to_use(text: str, expected: str) -> None:
    assert expected in check(text)


def test_an_export_may_not_take_the_name_a_table_of_a_tables_export_keeps_its_state_under() -> None:
    tables = "  - name: app\n    tables: [public.orders]\n    mode: cdc\n    destination: out\n"
    taken = "  - name: app.public.orders\n    table: public.orders\n    destination: other\n"
    said = check(PG + "exports:\n" + tables + taken)
    assert "export name 'app.public.orders' is where export 'app' keeps the state of one of its tables" in said


def test_the_original_tools_adaptive_false_and_max_value_mb_load() -> None:
    text = PG + "exports:\n" + EXPORT + "    tuning: {adaptive: false, max_value_mb: 64}\n"
    loaded = parse_config(text, base_dir=Path("."), offline=True)
    tuning = loaded.config.exports[0].tuning
    assert tuning is not None and tuning.max_value_mb == 64


def test_change_capture_needs_a_server_with_a_log(tmp_path: Path) -> None:
    import sqlite3

    from rivet.plan.export import build_plan

    sqlite3.connect(tmp_path / "db.sqlite").close()
    (tmp_path / "rivet.yaml").write_text(
        f"source: {{type: sqlite, path: {tmp_path / 'db.sqlite'}}}\nexports:\n  - name: a\n" + CDC
    )
    loaded = load_config(tmp_path / "rivet.yaml")
    with pytest.raises(ConfigError, match="mode: cdc reads a server's log and needs a postgres or mysql source"):
        build_plan(loaded, loaded.export("a"))

"""Values and types that cannot be exported exactly are refused, loudly, before anything looks complete."""

from __future__ import annotations

import decimal

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, DataError, QueryError, UnsupportedTypeError
from tests.conftest import pg_url, visible_parts

pytestmark = pytest.mark.postgres


def assert_nothing_written(directory):
    assert visible_parts(directory) == []
    assert not (directory / "_SUCCESS").exists()
    assert not (directory / "manifest.json").exists()
    leftovers = [p.name for p in directory.iterdir()] if directory.exists() else []
    assert leftovers == [], leftovers


def test_unsupported_types_name_every_column_and_write_nothing(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id, '10.0.0.1'::inet AS addr, 1.5::money AS price, point(1,2) AS p")
    with pytest.raises(UnsupportedTypeError) as err:
        rivet.export(pg_url(), table=t, destination=str(out))
    message = str(err.value)
    for column in ("addr", "price", "p"):
        assert f'"{column}"' in message
    assert '"addr"::text' in message
    assert {c["column"] for c in err.value.columns} == {"addr", "price", "p"}
    assert err.value.exit_code == 3
    assert_nothing_written(out)


def test_text_override_exports_an_unsupported_type_as_its_text(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id, '10.0.0.1/32'::inet AS addr")
    result = rivet.export(pg_url(), table=t, destination=str(out), columns={"addr": "text"})
    assert pq.read_table(result.files[0]).column("addr").to_pylist() == ["10.0.0.1/32"]


def test_unconstrained_numeric_needs_an_override(pg_table, out):
    t = pg_table("CREATE TABLE {t} (id int, amount numeric)")
    with pytest.raises(UnsupportedTypeError, match=r'columns: \{amount: "decimal\(P,S\)"\}'):
        rivet.export(pg_url(), table=t, destination=str(out))
    assert_nothing_written(out)


def test_decimal_override_is_exact_and_refuses_values_that_do_not_fit(pg, pg_table, out):
    t = pg_table("CREATE TABLE {t} (id int, amount numeric)")
    pg.execute(f"INSERT INTO {t} VALUES (1, 12345678901234.5678), (2, -0.0001), (3, NULL)")
    result = rivet.export(pg_url(), table=t, destination=str(out / "ok"), columns={"amount": "decimal(20,4)"})
    values = pq.read_table(result.files[0]).column("amount").to_pylist()
    assert values == [decimal.Decimal("12345678901234.5678"), decimal.Decimal("-0.0001"), None]

    pg.execute(f"INSERT INTO {t} VALUES (4, 1.00001)")
    with pytest.raises(DataError, match=r'column "amount": value 1.00001 has more fractional digits') as err:
        rivet.export(pg_url(), table=t, destination=str(out / "bad"), columns={"amount": "decimal(20,4)"})
    assert err.value.column == "amount"
    assert_nothing_written(out / "bad")


def test_override_for_a_missing_column_is_a_config_error(pg_table, out):
    t = pg_table("CREATE TABLE {t} (id int)")
    with pytest.raises(ConfigError, match="no such column"):
        rivet.export(pg_url(), table=t, destination=str(out), columns={"nope": "decimal(10,2)"})


@pytest.mark.parametrize(
    ("sql", "column", "message"),
    [
        ("SELECT 'NaN'::numeric(10,2) AS x", "x", "NaN cannot be stored"),
        ("SELECT 'infinity'::date AS x", "x", "infinity date"),
        ("SELECT '-infinity'::timestamptz AS x", "x", "-infinity timestamp"),
        ("SELECT '{{1,2},{3,4}}'::int[] AS x", "x", "2-dimensional array"),
    ],
)
def test_values_without_an_exact_form_fail_the_export(sql, column, message, out):
    with pytest.raises(DataError, match=message) as err:
        rivet.export(pg_url(), query=sql, destination=str(out))
    assert err.value.column == column
    assert_nothing_written(out)


def test_nan_numeric_survives_as_text(out):
    result = rivet.export(pg_url(), query="SELECT 'NaN'::numeric AS x", destination=str(out), columns={"x": "text"})
    assert pq.read_table(result.files[0]).column("x").to_pylist() == ["NaN"]


def test_duplicate_column_names_are_refused(out):
    with pytest.raises(ConfigError, match='two columns named "a"'):
        rivet.export(pg_url(), query="SELECT 1 AS a, 2 AS a", destination=str(out))


def test_sql_error_after_rows_were_sent_leaves_nothing_visible(out):
    # Division by zero at row 150000: earlier batches were already decoded.
    sql = "SELECT i, 1 / (i - 150000) AS x FROM generate_series(1, 200000) AS i"
    with pytest.raises(QueryError) as err:
        rivet.export(pg_url(), query=sql, destination=str(out), tuning={"batch_size": 1000})
    assert err.value.code == "22012"
    assert "division by zero" in str(err.value)
    assert_nothing_written(out)


def test_rotated_parts_of_a_failed_export_are_removed(out):
    sql = "SELECT i, md5(i::text) AS h, 1 / (i - 190000) AS x FROM generate_series(1, 200000) AS i"
    with pytest.raises(QueryError):
        rivet.export(pg_url(), query=sql, destination=str(out), max_file_size="64KB", tuning={"batch_size": 2000})
    assert_nothing_written(out)

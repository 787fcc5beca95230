"""SQLite as a source: declared types become exact Arrow types, and values that break them fail."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import DataError, UnsupportedTypeError


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, ok BOOLEAN, d DATE, ts DATETIME, amount DECIMAL(10,2))"
    )
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (-(2**63), 1.5, "Grüße 🎉", b"\x00\x01", 1, "1969-07-20", "1970-01-01 00:00:00.000001", "12.30"),
            (2**63 - 1, -0.0, "", b"", 0, "2024-02-29", "2024-03-10T02:30:00", 7),
            (None, None, None, None, None, None, None, None),
        ],
    )
    conn.commit()
    conn.close()
    return path


def test_declared_types_round_trip(db, tmp_path):
    result = rivet.export(str(db), table="t", destination=str(tmp_path / "o"))
    table = pq.read_table(result.files[0])
    assert table.schema.field("i").type == pa.int64()
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert table.to_pylist() == [
        {
            "i": -(2**63),
            "r": 1.5,
            "s": "Grüße 🎉",
            "b": b"\x00\x01",
            "ok": True,
            "d": dt.date(1969, 7, 20),
            "ts": dt.datetime(1970, 1, 1, 0, 0, 0, 1),
            "amount": decimal.Decimal("12.30"),
        },
        {
            "i": 2**63 - 1,
            "r": -0.0,
            "s": "",
            "b": b"",
            "ok": False,
            "d": dt.date(2024, 2, 29),
            "ts": dt.datetime(2024, 3, 10, 2, 30),
            "amount": decimal.Decimal("7.00"),
        },
        dict.fromkeys(["i", "r", "s", "b", "ok", "d", "ts", "amount"]),
    ]
    assert table.schema.field("amount").metadata[b"rivet.source_type"] == b"DECIMAL(10,2)"


def test_a_value_that_breaks_the_declared_type_fails_naming_column_and_row(db, tmp_path):
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO t (i) VALUES ('abc')")
    conn.commit()
    conn.close()
    with pytest.raises(DataError, match=r"column \"i\": declared INTEGER but holds text 'abc' \(row 4\)"):
        rivet.export(str(db), table="t", destination=str(tmp_path / "o"))
    assert not (tmp_path / "o" / "_SUCCESS").exists()


def test_decimal_that_does_not_fit_is_refused(db, tmp_path):
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO t (amount) VALUES ('1.005')")
    conn.commit()
    conn.close()
    with pytest.raises(DataError, match="never rounded"):
        rivet.export(str(db), table="t", destination=str(tmp_path / "o"))


def test_expressions_need_a_declared_type(db, tmp_path):
    with pytest.raises(UnsupportedTypeError, match=r"set columns: \{n: <type>\}"):
        rivet.export(str(db), query="SELECT count(*) AS n FROM t", destination=str(tmp_path / "o"))
    result = rivet.export(
        str(db), query="SELECT count(*) AS n FROM t", destination=str(tmp_path / "o"), columns={"n": "int8"}
    )
    assert pq.read_table(result.files[0]).column("n").to_pylist() == [3]

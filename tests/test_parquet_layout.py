"""The parquet: block: row groups by rows or bytes, page size, statistics, dictionary; read back from the files."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError
from tests.conftest import MYSQL_URL, pg_url, visible_parts


def _metadata(directory):
    [part] = visible_parts(directory)
    return pq.ParquetFile(part).metadata


@pytest.mark.postgres
def test_fixed_rows_row_groups_without_statistics_or_dictionary(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id, 'same text' AS v FROM generate_series(1, 2600) g")
    rivet.export(
        pg_url(),
        query=f"SELECT * FROM {table} ORDER BY id",
        destination=str(tmp_path / "o"),
        parquet={"row_group_strategy": "fixed_rows", "row_group_rows": 500, "statistics": False, "dictionary": False},
    )
    meta = _metadata(tmp_path / "o")
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [500] * 5 + [100]
    column = meta.row_group(0).column(1)
    assert not column.is_stats_set
    assert not any("DICTIONARY" in e for e in column.encodings)
    assert pq.read_table(visible_parts(tmp_path / "o")[0])["id"].to_pylist() == list(range(1, 2601))


@pytest.mark.postgres
def test_defaults_keep_statistics_and_dictionary_encode_repeated_text(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id, 'same text' AS v FROM generate_series(1, 2600) g")
    rivet.export(pg_url(), query=f"SELECT * FROM {table}", destination=str(tmp_path / "o"))
    column = _metadata(tmp_path / "o").row_group(0).column(1)
    assert column.is_stats_set and any("DICTIONARY" in e for e in column.encodings)


@pytest.mark.mysql
def test_memory_sized_row_groups_and_small_pages_on_mariadb(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, h char(32))")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, MD5(%s))", [(i, i) for i in range(1, 20001)])
    options = dict(query=f"SELECT * FROM {table}", destination=str(tmp_path / "big"))
    rivet.export(MYSQL_URL, **options)
    rivet.export(
        MYSQL_URL,
        query=f"SELECT * FROM {table}",
        destination=str(tmp_path / "small"),
        parquet={"row_group_strategy": "fixed_memory", "target_row_group_mb": 0.25, "data_page_size_kb": 4},
    )
    big, small = _metadata(tmp_path / "big"), _metadata(tmp_path / "small")
    assert big.num_row_groups == 1 and small.num_row_groups >= 4
    assert sum(small.row_group(i).num_rows for i in range(small.num_row_groups)) == 20000

    # The same 720 KB of values in 4 KiB pages rather than 1 MiB ones: about 170 more page headers
    # (over ten bytes each) against three more with the default page size.
    def encoded(meta) -> int:
        return sum(meta.row_group(i).column(1).total_uncompressed_size for i in range(meta.num_row_groups))

    assert encoded(small) > encoded(big) + 1000


def test_a_parquet_block_on_csv_or_fixed_rows_without_rows_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="the parquet: block applies to format: parquet"):
        rivet.export("sqlite:///x.db", query="SELECT 1", destination=str(tmp_path), format="csv", parquet={})
    with pytest.raises(ConfigError, match="row_group_strategy: fixed_rows needs row_group_rows"):
        rivet.export(
            "sqlite:///x.db", query="SELECT 1", destination=str(tmp_path), parquet={"row_group_strategy": "fixed_rows"}
        )

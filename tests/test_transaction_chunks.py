"""How ``write: merge`` cuts a run's change rows into merges: whole transactions only."""

from __future__ import annotations

import pyarrow as pa
import pytest

from rivet.errors import IntegrityError
from rivet.execution.merge import transaction_chunks


class Batches:
    """Change rows handed over in batches, counted like the native reader counts them."""

    def __init__(self, positions: list[list[int]], *, rows_read: int | None = None) -> None:
        self.schema = pa.schema([("__pos", pa.uint64()), ("id", pa.int64())])
        self.batches = [
            pa.record_batch([pa.array(b, pa.uint64()), pa.array(range(len(b)), pa.int64())], schema=self.schema)
            for b in positions
        ]
        self.rows_read = sum(len(b) for b in positions) if rows_read is None else rows_read
        self.server_rows = None
        self.expected_rows = None
        self.finished = False
        self.closed = False

    def __arrow_c_schema__(self) -> object:
        return self.schema.__arrow_c_schema__()

    def next_batch(self) -> pa.RecordBatch | None:
        if not self.batches:
            self.finished = True
            return None
        return self.batches.pop(0)

    def close(self) -> None:
        self.closed = True


def cut(positions: list[list[int]], every: int) -> list[tuple[list[int], int | None]]:
    reader = Batches(positions)
    chunks = [(c["__pos"].to_pylist(), after) for c, after in transaction_chunks(reader, "e", every)]  # type: ignore[arg-type]
    assert reader.closed
    return chunks


def test_chunks_end_with_whole_transactions_and_name_the_next():
    # Transactions 1 (two rows), 2, 3 (three rows, across two batches), 4.
    chunks = cut([[1, 1, 2, 3], [3, 3, 4]], every=3)
    assert chunks == [([1, 1, 2], 3), ([3, 3, 3], 4), ([4], None)]


def test_a_transaction_larger_than_a_chunk_is_never_split():
    assert cut([[5, 5, 5], [5, 5], [6]], every=2) == [([5, 5, 5, 5, 5], 6), ([6], None)]
    assert cut([[7, 7], [7]], every=1) == [([7, 7, 7], None)]


def test_every_row_is_in_one_chunk_once():
    positions = [[1, 2, 2, 3, 4, 4, 4], [5, 6], [6, 7, 8, 8]]
    chunks = cut(positions, every=2)
    assert [p for c, _ in chunks for p in c] == [p for b in positions for p in b]
    assert [after for _, after in chunks[:-1]] == [c[0] for c, _ in chunks[1:]]


def test_rows_the_reader_counted_but_did_not_hand_over_fail_the_read():
    reader = Batches([[1, 2]], rows_read=3)
    with pytest.raises(IntegrityError):
        list(transaction_chunks(reader, "e", 10))  # type: ignore[arg-type]
    assert reader.closed

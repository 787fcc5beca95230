"""What the change-capture tests check of change rows, whatever the source."""

from __future__ import annotations

from typing import Any

# The changes both servers' tests make to their table ``c``, as (op, id) in commit order: two
# inserts; two updates of key 1 and a row that lives and dies in one transaction; then key 2
# moved to 4, which deletes the old key before the row is there under the new one.
CHANGES_OF_C = [
    ("insert", 1), ("insert", 2), ("update", 1), ("update", 1), ("insert", 3), ("delete", 3),
    ("delete", 2), ("update", 4),
]  # fmt: skip


def assert_changes_of_c(rows: list[dict[str, Any]]) -> None:
    """The change rows are ``c``'s changes, each once, in a total order."""
    assert [(r["__op"], r["id"]) for r in rows] == CHANGES_OF_C
    order = [(r["__pos"], r["__seq"]) for r in rows]
    assert order == sorted(order) and len(set(order)) == len(order)


def replay(
    rows: list[dict[str, Any]], key: str = "id", start: dict[Any, dict[str, Any]] | None = None
) -> dict[Any, dict[str, Any]]:
    """The table the change rows leave, by ``key``: applied in order to ``start`` (a snapshot), unchanged
    values kept."""
    table: dict[Any, dict[str, Any]] = dict(start or {})
    for r in rows:
        data = {k: v for k, v in r.items() if not k.startswith("__")}
        if r["__op"] == "delete":
            table.pop(data[key], None)
            continue
        old = table.get(data[key], {})
        data.update({column: old.get(column) for column in r["__unchanged"]})
        table[data[key]] = data
    return table

"""The type report: per column, source type -> Arrow type -> fidelity, and the reader that reads it.

Fidelity:
- ``exact``: the Arrow type holds every value of the source type, unchanged.
- ``compatible``: every value is kept, in another kind of type (JSON, UUID and enums as
  strings, intervals as structs, MySQL TINYINT(1) as boolean and BIT(n) as unsigned,
  a ``columns: {c: text}`` override); a value the target cannot hold fails the export.
- ``refused``: no exact mapping; the export fails until the query casts the column or
  ``columns:`` overrides it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.errors import ConfigError, UnsupportedTypeError
from rivet.plan.reader import EngineChoice, choose_engine
from rivet.sources import ColumnOverrides
from rivet.sources.connectorx import SOURCE_TYPE, connectorx_gaps

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan

LOGICAL_TYPE = b"rivet.logical_type"


@dataclass(frozen=True)
class ColumnReport:
    """One column of the report."""

    column: str
    source_type: str
    arrow_type: str | None
    fidelity: str
    engine: str
    note: str = ""


@dataclass(frozen=True)
class ExportTypeReport:
    """The columns of one export, and the reader that will read them."""

    export: str
    engine: str
    engine_reason: str
    columns: list[ColumnReport]
    # The columns that can be read, as described (the run's source schema without the refused ones).
    schema: pa.Schema | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        """Whether every column is exact."""
        return all(c.fidelity == "exact" for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "export": self.export,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "exact": self.exact,
            "columns": [dataclasses.asdict(c) for c in self.columns],
        }

    def render(self) -> str:
        """A table for a terminal."""
        head = ("column", "source type", "arrow type", "fidelity", "engine", "note")
        rows = [head] + [
            (c.column, c.source_type, c.arrow_type or "-", c.fidelity, c.engine, c.note) for c in self.columns
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [f"export {self.export}: {self.engine} reader ({self.engine_reason})"]
        for r in rows:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
        return "\n".join(line.rstrip() for line in lines)


def type_report(plan: ExportPlan) -> ExportTypeReport:
    """Describe ``plan``'s query and classify every column (refused ones included)."""
    refused: dict[str, dict[str, str]] = {}
    overrides = plan.overrides
    try:
        schema = plan.source.describe(plan.query, overrides)
    except UnsupportedTypeError as e:
        # Describe again with the refused columns read as text, to report the others.
        refused = {c["column"]: c for c in e.columns}
        as_text = {**overrides.other, **dict.fromkeys(refused, "text")}
        overrides = ColumnOverrides(overrides.decimal, as_text)
        schema = plan.source.describe(plan.query, overrides)
    readable = pa.schema([f for f in schema if f.name not in refused])
    gaps = connectorx_gaps(plan.source.kind, readable)
    try:
        choice = choose_engine(plan, readable, chunked=plan.is_parallel)
    except ConfigError:
        # engine: connectorx where it is not exact: those columns make the export fail.
        choice = EngineChoice("connectorx", "source.engine: connectorx, which cannot read every column exactly")
        refused.update(
            {name: {"source_type": why.split(": ", 1)[0], "hint": why.split(": ", 1)[-1]} for name, why in gaps.items()}
        )
    columns = []
    for field in schema:
        if field.name in refused:
            info = refused[field.name]
            columns.append(ColumnReport(field.name, info["source_type"], None, "refused", "-", info["hint"]))
            continue
        fidelity, note = _fidelity(plan, field)
        if plan.engine != "native" and field.name in gaps:
            # Why auto leaves this export to the native reader.
            note = "; ".join(filter(None, [note, gaps[field.name].split(": ", 1)[-1]]))
        columns.append(
            ColumnReport(
                field.name,
                (field.metadata or {}).get(SOURCE_TYPE, b"").decode(),
                str(field.type),
                fidelity,
                choice.engine,
                note,
            )
        )
    return ExportTypeReport(plan.name, choice.engine, choice.reason, columns, readable)


def _fidelity(plan: ExportPlan, field: pa.Field) -> tuple[str, str]:
    meta = field.metadata or {}
    source_type = meta.get(SOURCE_TYPE, b"").decode()
    logical = meta.get(LOGICAL_TYPE, b"").decode()
    if plan.overrides.other.get(field.name) in ("text", "string"):
        return "compatible", "columns: read as text"
    if field.name in plan.overrides.decimal:
        return "exact", "columns: decimal override (a value that does not fit fails the export)"
    if logical:
        kind = "struct" if pa.types.is_struct(field.type) else str(field.type)
        return "compatible", f"{logical} as {kind}"
    note = plan.source.dialect.compatibility_note(field.type, source_type)
    if note is not None:
        return "compatible", note
    return "exact", ""

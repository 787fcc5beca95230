"""Which reader reads an export: the native one, or connectorx where it is exact and as safe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.errors import ConfigError
from rivet.sources.connectorx import ConnectorxScanner, column_blockers, connection_blockers

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.plan.export import ExportPlan


@dataclass(frozen=True)
class EngineChoice:
    """The reader of one export and why."""

    engine: str  # native or connectorx
    reason: str


def choose_engine(plan: ExportPlan, schema: pa.Schema, *, chunked: bool, channel: str | None = None) -> EngineChoice:
    """Apply ``source.engine`` to one export; ``connectorx`` asked for where it is not exact is an error.

    ``channel``: how the native reader's connection travels (``plaintext``, ``tls-...``), which
    decides what ``prefer`` means for connectorx; unknown, a MySQL ``prefer`` is refused.
    """
    if plan.engine == "native":
        return EngineChoice("native", "source.engine: native")
    blockers = _blockers(plan, schema, chunked=chunked, channel=channel)
    if plan.engine == "connectorx":
        if blockers:
            raise ConfigError(
                f"export '{plan.name}': source.engine: connectorx cannot read it exactly:\n  - "
                + "\n  - ".join(blockers)
                + "\n  use engine: auto (native where connectorx is not exact) or engine: native"
            )
        return EngineChoice("connectorx", "source.engine: connectorx")
    if blockers:
        return EngineChoice("native", blockers[0])
    if getattr(plan.source, "ssh", None) is not None:
        # The native reader's tunnel is in this process; connectorx's needs one of its own.
        return EngineChoice("native", "source.ssh: connectorx only when asked (engine: connectorx)")
    return EngineChoice("connectorx", "connectorx reads every column exactly")


def _blockers(plan: ExportPlan, schema: pa.Schema, *, chunked: bool, channel: str | None) -> list[str]:
    out = column_blockers(plan.source.kind, schema)
    if plan.overrides.decimal or plan.overrides.other:
        out.append("columns: overrides are applied by the native reader")
    if plan.tuning.throttle_ms:
        out.append("tuning.throttle_ms paces reads in the native reader only")
    if plan.consistent:
        out.append("snapshot: consistent needs every chunk read in one exported snapshot (native reader)")
    return out + connection_blockers(plan.source, chunked=chunked, channel=channel)


def connectorx_scanner(plan: ExportPlan, schema: pa.Schema, channel: str | None = None) -> ConnectorxScanner:
    """The connectorx scanner of ``plan``, whose reader ``choose_engine`` chose for ``channel``."""
    return ConnectorxScanner.for_source(plan.source, plan.tuning, schema, channel)

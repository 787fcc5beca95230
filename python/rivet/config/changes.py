"""The ``cdc:`` block of a ``mode: cdc`` export, in the original tool's shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from rivet.config.common import Bool, StrictModel, _reject_unsupported
from rivet.config.sizes import parse_size

# PostgreSQL replication slot names: lower-case letters, digits and underscores.
SLOT_PATTERN = r"^[a-z0-9_]{1,63}$"
# A publication is an identifier rivet quotes; kept to the same plain names.
PUBLICATION_PATTERN = r"^[A-Za-z0-9_]{1,63}$"

UNSUPPORTED_CDC_KEYS = {
    "capture_instance": "SQL Server change tables are not a rivet source; capture PostgreSQL or MySQL/MariaDB",
    "rollover": "use max_file_size to rotate parts (a part never splits a transaction's changes from its position)",
}


class CdcConfig(StrictModel):
    """``cdc:``: how a change-capture export anchors in the source's log.

    ``initial: snapshot`` publishes the table under ``<destination>/snapshot/`` on the first
    run, read at exactly the log position the changes then start from; ``none`` captures
    the changes from the first run on. ``slot``/``publication`` are PostgreSQL's (default:
    ``rivet_<export>``), ``server_id`` MySQL/MariaDB's replica id (default: derived from the
    export's name). The position itself is kept in the state store.
    """

    initial: Literal["snapshot", "none"] = "none"
    slot: Annotated[str, Field(pattern=SLOT_PATTERN)] | None = None
    publication: Annotated[str, Field(pattern=PUBLICATION_PATTERN)] | None = None
    server_id: Annotated[int, Field(ge=1, le=2**32 - 1)] | None = None
    # The original tool's position file; rivet keeps the position in its state store instead.
    checkpoint: str | None = None
    until_current: Bool = True
    # Warn when a run starts this far behind the log's end (1GB, 500MB, or bytes).
    max_lag_bytes: str | int | None = None
    # Under `rivet run --follow` without --every: seconds between two runs, each of which
    # publishes and commits what it read.
    commit_every_s: Annotated[float, Field(gt=0)] | None = None
    # Under write: merge: changes merged per commit, so a backlog is never held whole.
    commit_every_rows: Annotated[int, Field(gt=0)] | None = None

    @field_validator("max_lag_bytes")
    @classmethod
    def _size(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_size(v)
        return v

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _reject_unsupported(data, UNSUPPORTED_CDC_KEYS)

    @model_validator(mode="after")
    def _bounded(self) -> CdcConfig:
        if not self.until_current:
            raise ValueError(
                "until_current: false (streaming without end) is not supported: each run drains the log to "
                "where it ended when the run started, then publishes and exits; to keep capturing, use "
                "`rivet run --follow` (a run every --every seconds until stopped)"
            )
        return self

"""connectorx as a second reader, used only where it gives exactly what the native reader gives.

connectorx (``return_type="arrow_stream"``) reads a query rivet built (one per chunk),
and every batch is restored to the native schema: declared decimal precision and scale,
the ``UTC`` zone name, the narrow integer widths, the source-type metadata. The casts are
*safe*: a value that would change makes the read fail, and the chunk is read again by the
native reader. Which columns connectorx cannot read faithfully is decided up front from
the native schema (``connectorx_gaps``); the same rules feed ``rivet check --type-report``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from rivet.core.redact import redact_text
from rivet.errors import CancelledError, SourceError
from rivet.sources.network import NetworkSource

if TYPE_CHECKING:
    from collections.abc import Callable

    from rivet.config.tuning import Tuning
    from rivet.sources import AnySource

log = logging.getLogger("rivet")

SOURCE_TYPE = b"rivet.source_type"
ENGINES = ("auto", "native", "connectorx")

# connectorx reads every decimal as decimal128(38,10), rounding extra fraction digits, and
# through rust_decimal, whose 96-bit mantissa holds 28 digits: a wider value is rounded too.
CX_SCALE = 10
CX_DIGITS = 28

# Source types (as the native reader names them) connectorx reads exactly, per database.
_PG_EXACT = re.compile(
    r"^(boolean|smallint|integer|bigint|real|double precision|text|name|bytea|date|uuid"
    r"|character varying(\(\d+\))?|character(\(\d+\))?"
    r"|timestamp(\(\d\))? with(out)? time zone|numeric\(\d+,\d+\))$"
)
_MY_EXACT = re.compile(
    r"^((tiny|small|medium|big)?int|tinyint\(1\)|float|double|decimal\(\d+,\d+\))( unsigned)?$"
    r"|^(date|datetime(\(\d\))?|year|char|varchar|text|enum|set|json|binary|varbinary|blob)$"
)
_SQLITE_TYPES = (pa.int64(), pa.float64(), pa.string(), pa.binary())
# Why connectorx is not exact for a source type, by the type's leading word.
_WHY = {
    "postgres": {
        "interval": "connectorx panics on interval",
        "json": "connectorx re-serialises JSON (whitespace and key order change)",
        "jsonb": "connectorx re-serialises JSON (whitespace and key order change)",
        "numeric": "an unconstrained numeric has no declared scale",
        "time": "connectorx reads 24:00:00 as 00:00:00",
    },
    "mysql": {
        "time": "connectorx cannot read negative or over-24h TIME",
        "timestamp": "connectorx reads TIMESTAMP in the session time zone, not UTC",
        "bit": "connectorx returns BIT as bytes",
    },
}

# connectorx (chrono) writes PostgreSQL's ±infinity as these out-of-range values.
_PG_INFINITY = {
    "timestamp": (8210266876799999999, -8334601228800000000),
    "date": (95026236, -96465292),
}


def _column_gap(kind: str, field: pa.Field) -> str | None:
    source_type = (field.metadata or {}).get(SOURCE_TYPE, b"").decode()
    t = field.type
    if pa.types.is_decimal(t) and t.scale > CX_SCALE:
        return f"{source_type or t}: connectorx rounds decimals to decimal(38,10)"
    if pa.types.is_decimal(t) and t.precision > CX_DIGITS:
        return f"{source_type or t}: connectorx holds decimals in {CX_DIGITS} digits"
    exact = {"postgres": _PG_EXACT, "mysql": _MY_EXACT}.get(kind)
    if exact is not None and not exact.match(source_type):
        return f"{source_type}: {_why_not(kind, source_type)}"
    if kind == "sqlite" and t not in _SQLITE_TYPES:
        return f"{source_type or t}: connectorx infers SQLite types from the first row"
    return None


def _why_not(kind: str, source_type: str) -> str:
    if source_type.endswith("[]"):
        return "connectorx does not map arrays exactly"
    if re.fullmatch(r"numeric\(\d+,-\d+\)", source_type):
        return "connectorx does not map a negative scale"
    word = re.split(r"[\s(\[]", source_type, maxsplit=1)[0]
    return _WHY[kind].get(word, "connectorx does not map this type exactly (enums, domains and the like)")


def connectorx_gaps(kind: str, schema: pa.Schema) -> dict[str, str]:
    """Column -> why connectorx would not read it exactly (empty: connectorx is faithful)."""
    gaps = {f.name: gap for f in schema if (gap := _column_gap(kind, f)) is not None}
    if len(set(schema.names)) != len(schema.names):
        gaps["*"] = "duplicate column names"
    return gaps


def connectorx_available() -> bool:
    """Whether the connectorx package is installed."""
    try:
        import connectorx  # noqa: F401
    except ImportError:
        return False
    return True


def engine_label(engine: str, fallbacks: int) -> str:
    """``native``, ``connectorx``, or ``connectorx+native`` when some reads fell back."""
    return "connectorx+native" if engine == "connectorx" and fallbacks else engine


def column_blockers(kind: str, schema: pa.Schema) -> list[str]:
    """Why connectorx cannot read these columns exactly (or at all): empty when it can."""
    out = [f"column {column}: {why}" for column, why in connectorx_gaps(kind, schema).items()]
    if not connectorx_available():
        out.insert(0, "connectorx is not installed (pip install 'rivet[connectorx]')")
    return out


def connection_blockers(source: AnySource, *, chunked: bool, channel: str | None) -> list[str]:
    """Why connectorx would not read from ``source`` as the native reader does: empty when it would."""
    out = []
    if isinstance(source, NetworkSource) and source.ssh is not None:
        if source.target()["tls_mode"] == "verify-full":
            out.append(
                "source.ssh with TLS verify-full: connectorx would check the certificate against the tunnel's "
                "local address, not the database's host name (the native reader checks the host name)"
            )
    if source.kind == "postgres" and not chunked:
        out.append("a single-stream PostgreSQL read pages with a cursor; connectorx would hold one long statement")
    if connection_url(source, channel=channel, tunnel=False) is None:
        out.append("the connection settings cannot be expressed as a connectorx URL")
    out += _security_blockers(source, channel)
    return out


def _security_blockers(source: AnySource, channel: str | None) -> list[str]:
    """Where connectorx would connect less safely than the native reader does."""
    if not isinstance(source, NetworkSource):
        return []
    out = []
    if not source.password_safe():
        out.append(
            "connectorx would send the password in whatever form the server asks (cleartext, MD5, a native "
            "hash) to a server TLS has not proven; the native reader does so only over verified TLS. Set "
            "tls.mode verify-full (or tls.allow_unverified_password: true), or engine: native"
        )
    if source.channel_binding == "require":
        out.append("channel_binding: require is enforced by the native reader only")
    if source.kind == "mysql" and channel is None and source.target()["tls_mode"] == "prefer":
        out.append(
            "ssl-mode PREFERRED: connectorx cannot fall back to plaintext as the native reader does, nor be told "
            "which it got; set tls.mode require, verify-ca or verify-full (or disable)"
        )
    return out


def connection_url(
    source: AnySource, tuning: Tuning | None = None, *, channel: str | None = None, tunnel: bool = True
) -> str | None:
    """The connectorx URL of ``source``, or None where its driver could not connect as the native reader does.

    The native module writes it from the settings it resolves for its own connections, so both readers
    reach the same server, database and user; rivet's session limits go in where the driver takes them.
    A MySQL ``prefer`` becomes what the native reader's connection got (``channel``): TLS where the
    server offered it, plaintext where it did not. Through ``source.ssh`` the URL names the local end
    of a tunnel run by a process of its own (connectorx holds the GIL while it connects, so the
    native reader's in-process tunnel could not carry it); ``tunnel`` False: the URL's shape only,
    no tunnel opened.
    """
    if not isinstance(source, NetworkSource):
        return "sqlite://" + quote(source.path)
    from rivet._native import connectorx_url

    timeout_ms = tuning.statement_timeout_s * 1000 if tuning is not None and tuning.statement_timeout_s else None
    if source.ssh is None:
        args = source.connect_args()
    else:
        args = source.target_args()
        if tunnel:
            from rivet.sources.forwarder import forwarded_apart

            args["host"], args["port"] = forwarded_apart(source.ssh, *source.tunnelled_target())
    return connectorx_url(source.kind, args, channel, timeout_ms)


@dataclass(frozen=True)
class ConnectorxScanner:
    """Opens connectorx reads of one export's queries, restored to its native schema."""

    url: str
    kind: str
    schema: pa.Schema
    batch_rows: int
    # Through source.ssh: the URL made again for each read, so a tunnel process that died is replaced.
    renewed: Callable[[], str | None] | None = None

    @classmethod
    def for_source(
        cls, source: AnySource, tuning: Tuning, schema: pa.Schema, channel: str | None = None
    ) -> ConnectorxScanner:
        """The scanner of ``source`` (whose connection settings were accepted for ``channel``)."""
        url = connection_url(source, tuning, channel=channel)
        assert url is not None
        tunnelled = isinstance(source, NetworkSource) and source.ssh is not None
        renewed = partial(connection_url, source, tuning, channel=channel) if tunnelled else None
        return cls(url, source.kind, schema, tuning.batch_rows, renewed)

    def open(self, query: str) -> ConnectorxReader:
        """Start reading ``query``; FastPathError when connectorx cannot."""
        url = (self.renewed() if self.renewed is not None else None) or self.url
        return ConnectorxReader(url, query, self.schema, self.kind, self.batch_rows)


class FastPathError(SourceError):
    """connectorx could not read a chunk exactly; the native reader reads it instead."""

    rows_written = 0  # rows of the chunk already handed on when connectorx gave up


class ConnectorxReader:
    """A consume-once stream of batches read by connectorx and restored to the native schema."""

    def __init__(self, url: str, query: str, schema: pa.Schema, kind: str, batch_rows: int) -> None:
        self.schema = schema
        self._kind = kind
        self._cancelled = False
        self.rows_read = 0
        # connectorx reports no row count of its own: the end of its stream is all it says.
        self.finished = False
        self.server_rows: int | None = None
        self.expected_rows: int | None = None
        try:
            import connectorx as cx

            self._reader = cx.read_sql(url, query, return_type="arrow_stream", batch_size=batch_rows)
        except BaseException as e:  # noqa: BLE001 - connectorx panics are BaseExceptions
            raise _fast_path_error(e) from None

    def next_batch(self) -> pa.RecordBatch | None:
        """The next batch in the native schema, or None at the end."""
        if self._cancelled:
            raise CancelledError("the read was cancelled")
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self.finished = True
            return None
        except BaseException as e:  # noqa: BLE001 - connectorx panics are BaseExceptions
            raise _fast_path_error(e) from None
        restored = restore(batch, self.schema, self._kind)
        self.rows_read += restored.num_rows
        return restored

    def cancel(self) -> None:
        """Stop at the next batch."""
        self._cancelled = True

    def close(self) -> None:
        """Release the stream."""
        self._reader = None


def _fast_path_error(e: BaseException) -> BaseException:
    if isinstance(e, KeyboardInterrupt | SystemExit):
        return e
    first_line = redact_text((str(e).strip().splitlines() or [""])[0][:300])
    return FastPathError(f"connectorx: {type(e).__name__}: {first_line}")


def restore(batch: pa.RecordBatch, schema: pa.Schema, kind: str) -> pa.RecordBatch:
    """``batch`` as the native reader would have produced it, or FastPathError if a value would change."""
    if batch.num_columns != len(schema):
        raise FastPathError(f"connectorx returned {batch.num_columns} columns, expected {len(schema)}")
    columns = []
    for field, column in zip(schema, batch.columns, strict=True):
        try:
            columns.append(_restore_column(column, field, kind))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise FastPathError(f"connectorx: column {field.name}: {e}") from None
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _restore_column(column: pa.Array, field: pa.Field, kind: str) -> pa.Array:
    t = field.type
    if pa.types.is_boolean(t) and pa.types.is_integer(column.type):
        # MySQL TINYINT(1) and BIT(1): only 0 and 1 are booleans.
        low, high = pc.min_max(column).values()
        if (low.is_valid and low.as_py() < 0) or (high.is_valid and high.as_py() > 1):
            raise FastPathError(f"connectorx: column {field.name}: a value other than 0 or 1 in a boolean column")
    if kind == "postgres" and (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
        sentinels = _PG_INFINITY["date" if pa.types.is_date(column.type) else "timestamp"]
        raw = column.cast(pa.int32() if pa.types.is_date(column.type) else pa.int64())
        if pc.any(pc.is_in(raw, pa.array(sentinels, raw.type))).as_py():
            raise FastPathError(f"connectorx: column {field.name}: infinity has no Arrow value")
    if column.type == t:
        return column
    # Safe casts: the zone renamed (+00:00 -> UTC, same instants), widths narrowed, decimals
    # rescaled, each refusing any value that would change.
    return column.cast(t, safe=True)

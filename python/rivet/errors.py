"""The one exception tree of rivet, and the exit code each error maps to.

Exit codes (a documented contract, the same for every command):

* 0 - success
* 1 - an export failed (source, destination or runtime error)
* 2 - bad configuration or usage
* 3 - data integrity: a value or a column type cannot be exported exactly, or rows
  were lost on the way (counts disagree, validation or reconcile mismatch)
* 4 - schema drift (reserved)
* 130 - interrupted (Ctrl-C / SIGTERM)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_SCHEMA_DRIFT = 4
# rivet check --freshness: an export is past its warn_after (and none past its error_after).
EXIT_STALE_WARN = 5
EXIT_INTERRUPTED = 130


class RivetError(Exception):
    """Root of every error rivet raises on purpose."""

    exit_code = EXIT_FAILED

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross processes (a cluster's workers) with what they carry: a SQLSTATE decides
        # a retry, a chunk's cause its hint. Default pickling would call __init__ with the message
        # alone (which ChunkError refuses) and drop the cause.
        return (_rebuild, (type(self), self.args, self.__dict__, self.__cause__))


def _rebuild(
    cls: type[RivetError], args: tuple[object, ...], attributes: dict[str, object], cause: BaseException | None
) -> RivetError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(attributes)
    error.__cause__ = cause
    return error


class ConfigError(RivetError):
    """The configuration (file, keys or values) is invalid."""

    exit_code = EXIT_USAGE


class SourceError(RivetError):
    """The source database failed or refused a statement.

    Attributes:
        code: SQLSTATE (PostgreSQL) or server error code, when known.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SourceConnectionError(SourceError):
    """Could not connect, or the connection was lost while reading.

    Attributes:
        lost: True when an established connection broke mid-read.
    """

    def __init__(self, message: str, *, code: str | None = None, lost: bool = False) -> None:
        super().__init__(message, code=code)
        self.lost = lost


class QueryError(SourceError):
    """The server rejected a statement (bad SQL, permissions, timeouts...)."""


class UnsupportedTypeError(RivetError):
    """Result columns whose types have no exact mapping; nothing was written.

    Attributes:
        columns: one dict per refused column: ``column``, ``source_type``, ``hint``.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, *, columns: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.columns = columns or []


class DataError(RivetError):
    """A value could not be exported exactly (it is never turned into NULL).

    Attributes:
        column: the column holding the value.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class IntegrityError(RivetError):
    """Rows were lost or invented on the way.

    The server's count, the rows decoded and the rows written disagree, or a
    validation or reconcile found a mismatch. Nothing is published.
    """

    exit_code = EXIT_DATA


class ExportBusyError(RivetError):
    """Another run of the same export holds its lease; this run was refused."""


class DestinationError(RivetError):
    """Writing or committing output at the destination failed."""


class ClusterError(RivetError):
    """The Dask cluster could not be reached, or was lost during the run (which stays resumable)."""


class StateError(RivetError):
    """The state store is unreadable or inconsistent."""


class StateConflictError(StateError):
    """The state store holds state of this export's name written for another export; it is not read."""

    exit_code = EXIT_USAGE


class ChunkError(RivetError):
    """A chunk failed for good; the message names the chunk and its SQL, the cause is kept.

    The exit code is the cause's.
    """

    def __init__(self, message: str, *, cause: BaseException) -> None:
        super().__init__(message)
        self.__cause__ = cause
        self.exit_code = exit_code_for(cause)


class CancelledError(RivetError):
    """The work was stopped on purpose (another chunk failed, or the run was interrupted)."""

    exit_code = EXIT_INTERRUPTED


class QualityError(RivetError):
    """The rows written failed a ``quality`` gate; nothing was published and no cursor moved.

    Attributes:
        failures: one line per failed gate, with its numbers.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, *, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class SchemaDriftError(RivetError):
    """The result schema changed and the export's policy is to fail.

    Attributes:
        drift: the columns added, removed and retyped (as a run's result reports them), when known.
    """

    exit_code = EXIT_SCHEMA_DRIFT

    def __init__(self, message: str, *, drift: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.drift = drift


def exit_code_for(error: BaseException) -> int:
    """The process exit code for ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, RivetError):
        return error.exit_code
    return EXIT_FAILED


# What to do about each kind of error, for people and orchestrators (--json-errors).
HINTS = {
    "ConfigError": "fix the key or value the message names; `rivet check --config-only -c FILE` checks a config",
    "SourceConnectionError": "check that the database is reachable from here: host, port, TLS and credentials",
    "QueryError": "check the SQL and the user's privileges; `rivet check -c FILE` describes every query",
    "SourceError": "the database refused: see its message and code",
    "UnsupportedTypeError": "cast the column in the query or give it a `columns:` override (`rivet check`)",
    "DataError": "a value cannot be exported exactly: cast its column in the query or override its type",
    "IntegrityError": "rows were lost on the way and nothing was published: run again; report it if it repeats",
    "ExportBusyError": "another run of this export holds its lease: wait for it, or run with --wait",
    "DestinationError": "check the destination's path or bucket, its credentials and free space",
    "ClusterError": "check the Dask scheduler and its workers; `rivet run --resume` continues a checkpointed run",
    "StateError": "check the state store: the file beside the config, or the database RIVET_STATE_URL names",
    "StateConflictError": "the stored state belongs to another export: `rivet state rebind` keeps it for this one, "
    "`rivet state reset` forgets it, `state.namespace` keeps the two apart",
    "QualityError": "the rows failed a quality gate and nothing was published: see the gate's numbers",
    "SchemaDriftError": "the columns changed and nothing was published: fix the query, or set on_schema_drift: warn",
}


def hint_for(error: BaseException | str | None) -> str | None:
    """What to do about ``error`` (an exception, or the class name a run summary gives)."""
    if error is None:
        return None
    if isinstance(error, str):
        return HINTS.get(error)
    if isinstance(error, ChunkError) and error.__cause__ is not None:
        return hint_for(error.__cause__)
    for cls in type(error).__mro__:
        if cls.__name__ in HINTS:
            return HINTS[cls.__name__]
    return None


class InternalError(RivetError, RuntimeError):
    """The native module refused a use (a reader read twice, or by two threads) or failed inside.

    Also a RuntimeError, as it was before it joined the tree.
    """

"""Which failures are worth retrying, and how long to wait: one classifier for every engine.

Decisions come from SQLSTATE (PostgreSQL) and server error codes (MySQL); message
text is only a fallback where a code is ambiguous or missing.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.errors import (
    CancelledError,
    ConfigError,
    DataError,
    DestinationError,
    ExportBusyError,
    IntegrityError,
    QueryError,
    SourceConnectionError,
    SourceError,
    UnsupportedTypeError,
)

if TYPE_CHECKING:
    from rivet.core.events import Observer

log = logging.getLogger("rivet")


class RetryClass(enum.Enum):
    """How a failure should be handled."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    RECONNECT = "transient-with-reconnect"


@dataclass(frozen=True)
class Verdict:
    """A classification and the extra pause the cause calls for.

    ``extra_wait`` is in units of the configured backoff, so a server restart waits
    longer than a deadlock whatever the base backoff is.
    """

    kind: RetryClass
    extra_wait: float = 0.0
    reason: str = ""

    @property
    def retryable(self) -> bool:
        """True unless the failure is permanent."""
        return self.kind is not RetryClass.PERMANENT


# SQLSTATEs with a known retry behaviour (PostgreSQL appendix A), with their extra wait.
PG_RECONNECT = {"57P01": 4.0, "57P02": 4.0, "57P03": 4.0, "53300": 4.0}
PG_TRANSIENT = {"40001": 0.5, "40P01": 0.5, "55P03": 0.0, "58000": 0.5}
MYSQL_TRANSIENT = {"1213": 0.5, "1205": 0.0}
MYSQL_RECONNECT = {"1040": 4.0, "1053": 4.0, "2006": 0.0, "2013": 0.0}
# Access, unknown objects, syntax, bad values, and statement time limits (MySQL 3024,
# MariaDB 1969): another attempt would fail the same way.
MYSQL_PERMANENT = {"1044", "1045", "1049", "1054", "1064", "1142", "1146", "1292", "1366", "3024", "1969"}


def _classify_code(code: str, message: str) -> Verdict | None:
    if code in PG_RECONNECT:
        return Verdict(RetryClass.RECONNECT, PG_RECONNECT[code], f"SQLSTATE {code}")
    if code in PG_TRANSIENT:
        return Verdict(RetryClass.TRANSIENT, PG_TRANSIENT[code], f"SQLSTATE {code}")
    if code == "57014":
        # query_canceled covers both a statement timeout (running it again would time
        # out again) and a cancel from outside (worth another try).
        if "statement timeout" in message:
            return Verdict(RetryClass.PERMANENT, reason="statement timeout")
        return Verdict(RetryClass.TRANSIENT, reason="statement cancelled")
    if code == "08P01" and "statement pooling mode" in message:
        # PgBouncer in statement pooling refuses every transaction: another attempt meets the same pool.
        return Verdict(RetryClass.PERMANENT, reason="a statement pool carries no transaction")
    if code.startswith("08"):
        return Verdict(RetryClass.RECONNECT, reason=f"SQLSTATE {code}")
    if code.startswith("53"):
        return Verdict(RetryClass.TRANSIENT, 2.0, f"SQLSTATE {code}")
    if code in MYSQL_RECONNECT:
        return Verdict(RetryClass.RECONNECT, MYSQL_RECONNECT[code], f"MySQL error {code}")
    if code in MYSQL_TRANSIENT:
        return Verdict(RetryClass.TRANSIENT, MYSQL_TRANSIENT[code], f"MySQL error {code}")
    if code in MYSQL_PERMANENT:
        return Verdict(RetryClass.PERMANENT, reason=f"MySQL error {code}")
    if code[:2] in ("28", "42", "22", "23", "2B", "3D", "3F", "0A"):
        return Verdict(RetryClass.PERMANENT, reason=f"SQLSTATE {code}")
    return None


_TRANSIENT_TEXT = (
    "connection reset",
    "broken pipe",
    "connection refused",
    "timed out",
    "unexpected eof",
    "server closed the connection",
    "gone away",
    "lost connection",
)


def classify(error: BaseException) -> Verdict:
    """Classify ``error``."""
    if isinstance(
        error, ConfigError | DataError | UnsupportedTypeError | CancelledError | IntegrityError | ExportBusyError
    ):
        return Verdict(RetryClass.PERMANENT, reason=type(error).__name__)
    if isinstance(error, SourceError) and error.code:
        verdict = _classify_code(error.code, str(error))
        if verdict is not None:
            return verdict
    if isinstance(error, SourceConnectionError):
        return Verdict(RetryClass.RECONNECT, reason="connection")
    if isinstance(error, DestinationError | OSError):
        return Verdict(RetryClass.TRANSIENT, 0.0, "destination or local I/O")
    if isinstance(error, QueryError) or not isinstance(error, SourceError):
        text = str(error).lower()
        if isinstance(error, SourceError) and any(t in text for t in _TRANSIENT_TEXT):
            return Verdict(RetryClass.RECONNECT, reason="connection (from the message)")
        return Verdict(RetryClass.PERMANENT, reason=type(error).__name__)
    return Verdict(RetryClass.PERMANENT, reason=type(error).__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt, with exponential backoff and jitter."""

    max_retries: int
    backoff_s: float

    def delay(self, attempt: int, verdict: Verdict, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        jitter = (rng or random).uniform(0.5, 1.5)
        return self.backoff_s * (2 ** (attempt - 1) * jitter + verdict.extra_wait)


@dataclass(frozen=True)
class Retrier:
    """Decides, reports and times the next attempt of a read (a chunk, or a whole export)."""

    export: str
    policy: RetryPolicy
    max_attempts: int
    events: Observer

    def next_attempt(
        self, error: BaseException, attempt: int, *, chunk: int | None = None, label: str = ""
    ) -> tuple[Verdict, float | None]:
        """The failure's class, and the seconds to wait before another attempt (None: it is final)."""
        verdict = classify(error)
        if not verdict.retryable or attempt >= self.max_attempts:
            return verdict, None
        wait = self.policy.delay(attempt, verdict)
        self.events.emit(
            "retry",
            self.export,
            chunk=chunk,
            attempt=attempt,
            reason=verdict.reason,
            wait_s=round(wait, 3),
            error=str(error),
        )
        what = f"chunk {chunk} {label}" if chunk is not None else f"export {self.export}"
        log.warning(
            "%s failed (%s, attempt %d of %d), retrying in %.1fs: %s",
            what,
            verdict.reason,
            attempt,
            self.max_attempts,
            wait,
            error,
        )
        return verdict, wait

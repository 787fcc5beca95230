"""Where the CLI writes: data and JSON to stdout, progress, summaries and errors to stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from rivet.core.redact import redact_text
from rivet.errors import RivetError, exit_code_for, hint_for

if TYPE_CHECKING:
    from rivet.execution.results import ExportResult

# --json-errors: every error is also one line of JSON on stderr, for orchestrators.
JSON_ERRORS = False


def _color() -> bool:
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written.

    While progress is drawn live, rich replaces it, so log lines print above the bars
    instead of through them.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging() -> None:
    """Send the notices and warnings of the ``rivet`` logger to stderr as short lines."""
    import logging

    logger = logging.getLogger("rivet")
    if not logger.handlers:
        handler = logging.StreamHandler(_CurrentStderr())
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def say(message: str) -> None:
    """A diagnostic line for the human, on stderr (progress, warnings, errors)."""
    print(message, file=sys.stderr, flush=True)


def report(message: str) -> None:
    """A line of a command's result, on stdout (``rivet check > report.txt`` keeps it)."""
    print(message, file=sys.stdout, flush=True)


def emit_json(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """A machine-readable document on stdout (or ``stream``)."""
    print(json.dumps(document, indent=2), file=stream or sys.stdout, flush=True)


def error_line(code: int, error: BaseException | str | None, message: str | None, export: str | None = None) -> None:
    """One error as a JSON line on stderr (``--json-errors``): code, error class, export, message, hint."""
    kind = error if isinstance(error, str) or error is None else type(error).__name__
    document = {
        "code": code,
        "error": kind,
        "export": export,
        "message": redact_text(message or ""),
        "hint": hint_for(error),
    }
    print(json.dumps(document), file=sys.stderr, flush=True)


def json_error(code: int, error: BaseException | str | None, message: str | None, export: str) -> None:
    """With ``--json-errors``, one export's failure as a JSON line."""
    if JSON_ERRORS:
        error_line(code, error, message, export)


def failed_exports(results: Iterable[ExportResult]) -> None:
    """With ``--json-errors``, one JSON line per export that failed."""
    for r in results:
        if not r.ok:
            json_error(r.exit_code, r.exception or r.error_type, r.error, r.name)


def report_error(error: BaseException) -> int:
    """Print ``error`` (with its causes) and return the exit code it maps to.

    With ``--json-errors`` the error is also printed as one JSON line.
    """
    if JSON_ERRORS:
        causes, cause = [], error.__cause__
        while cause is not None:
            causes.append(redact_text(str(cause)))
            cause = cause.__cause__
        text = "; caused by: ".join([str(error) or type(error).__name__, *causes])
        error_line(exit_code_for(error), error, text)
    if isinstance(error, KeyboardInterrupt):
        say("interrupted")
        return exit_code_for(error)
    prefix = "\033[31merror\033[0m" if _color() else "error"
    text = str(error) if isinstance(error, RivetError) else f"{type(error).__name__}: {error}"
    say(f"{prefix}: {redact_text(text)}")
    cause = error.__cause__
    while cause is not None:
        say(f"  caused by: {redact_text(str(cause))}")
        cause = cause.__cause__
    return exit_code_for(error)

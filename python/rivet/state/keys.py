"""Whose state a row is: an export's namespace and name, and the identity its state was written for.

Configs that share a state store (two files in one folder, or machines with one
``RIVET_STATE_URL``) may each have an export called ``orders``. A name alone would
let one read the other's cursor and skip rows. Every row of the store therefore
belongs to a namespace: by default one derived from what makes the export itself
(the source without credentials, the export's name, its table or query), or the one
``state.namespace:`` / ``RIVET_STATE_NAMESPACE`` names, so a moved config keeps its
state. The identity the state was written for is kept beside it and compared on
every run: state written for another source, table, query or cursor is refused by
name, never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

from rivet.config.common import NAMESPACE_PATTERN
from rivet.config.layout import FIXED_DAY
from rivet.errors import ConfigError

NAMESPACE_VARIABLE = "RIVET_STATE_NAMESPACE"
# Rows written before namespaces existed (or carried over from the original tool) until an
# export claims them.
UNCLAIMED = ""
# Derived namespaces start with this, so they never equal a name a user gives.
DERIVED_PREFIX = "auto-"


@dataclass(frozen=True)
class ExportIdentity:
    """What an export's state is about: where rows come from, which rows, by which cursor, to where."""

    source: str  # kind://host:port/database (or sqlite:path), no user or password
    target: str  # table:<quoted name> or query:<text with whitespace collapsed>
    cursor: str | None  # the cursor column (and its fallback), or the time window's column
    destination: str  # the destination folder, with {date} on a fixed day

    def differences(self, stored: ExportIdentity) -> list[str]:
        """What differs from ``stored`` so that its state would select the wrong rows, in words.

        A cursor counts only when both have one: a full export keeps none, and a first
        incremental run starts without one.
        """
        found = []
        for field, label in (("source", "source"), ("target", "table or query"), ("cursor", "cursor column")):
            before, now = getattr(stored, field), getattr(self, field)
            if before != now and (field != "cursor" or (before is not None and now is not None)):
                found.append(f"{label} {_short(before)} (now {_short(now)})")
        return found


@dataclass(frozen=True)
class ExportKey:
    """The key of an export's rows in the state store."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def derived(self) -> bool:
        """Whether the namespace was derived from the export's identity (not named by the user)."""
        return self.namespace.startswith(DERIVED_PREFIX)


def export_key(name: str, identity: ExportIdentity, namespace: str | None) -> ExportKey:
    """The key of export ``name``: in ``namespace`` if given, else in the one its identity derives.

    A derived namespace holds the destination too: the same table exported to two folders
    needs two cursors, or the second folder would miss the rows the first run took.
    """
    if namespace:
        return ExportKey(namespace, name)
    basis = json.dumps([identity.source, name, identity.target, identity.destination])
    return ExportKey(DERIVED_PREFIX + hashlib.sha256(basis.encode()).hexdigest()[:16], name)


def configured_namespace(from_config: str | None) -> str | None:
    """The namespace the environment (first) or the config names, if any."""
    named = os.environ.get(NAMESPACE_VARIABLE, "").strip()
    if named and not re.match(NAMESPACE_PATTERN, named):
        raise ConfigError(
            f"{NAMESPACE_VARIABLE}: {named!r} is not a namespace (letters, digits, '_', '.', ':' and '-', "
            "starting with a letter or digit, at most 128)"
        )
    return named or from_config or None


def query_target(query: str) -> str:
    """A query as an identity: whitespace runs collapsed and a trailing ``;`` dropped, so layout edits keep it."""
    return "query:" + " ".join(query.split()).rstrip(";").rstrip()


def written_to(recorded: str, folder: str) -> bool:
    """Whether a run that wrote to ``recorded`` wrote to ``folder`` (``{date}`` on the fixed day)."""
    day = FIXED_DAY.strftime("%Y-%m-%d")
    pattern = r"\d{4}-\d{2}-\d{2}".join(re.escape(piece) for piece in folder.split(day))
    return re.fullmatch(pattern + "/?", recorded) is not None


def _short(text: str | None, limit: int = 80) -> str:
    if text is None:
        return "none"
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")

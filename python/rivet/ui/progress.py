"""Where progress is shown.

Progress is drawn live (rich) when stderr is a terminal or the code runs in Jupyter;
otherwise a run prints plain lines: when an export starts, every ``PLAIN_EVERY_S``
seconds while it runs, and when it ends. The CLI turns live drawing off for --json.
"""

from __future__ import annotations

import os
import sys

# None: decide from the environment; the CLI sets False for --json and --events.
ENABLED: bool | None = None
# Seconds between two plain progress lines of one export (RIVET_PROGRESS_EVERY_S overrides).
PLAIN_EVERY_S = 10.0


def live() -> bool:
    """Whether progress is drawn in place: a terminal, or a Jupyter notebook."""
    if ENABLED is not None:
        return ENABLED
    if sys.stderr.isatty():
        return True
    return _in_jupyter()


def _in_jupyter() -> bool:
    """A Jupyter kernel that can redraw: rich draws there through an ipywidgets Output."""
    if "ipykernel" not in sys.modules:
        return False
    import importlib.util

    from rich.console import Console

    return Console().is_jupyter and importlib.util.find_spec("ipywidgets") is not None


def plain_every_s() -> float:
    """The period of plain progress lines."""
    try:
        return max(0.05, float(os.environ.get("RIVET_PROGRESS_EVERY_S", PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S

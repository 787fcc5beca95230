"""Running the exports of a config, one after another, with a state store beside it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rivet.config import LoadedConfig
from rivet.engine import run_export
from rivet.errors import exit_code_for
from rivet.plan import build_plan
from rivet.results import ExportResult, RunResult
from rivet.runinfo import run_id_for, utc_now
from rivet.state import STATE_FILE, StateStore


def run_config(
    loaded: LoadedConfig,
    exports: Sequence[str] | None = None,
    *,
    resume: bool = False,
    on_result: Callable[[ExportResult], None] | None = None,
) -> RunResult:
    """Run the selected exports (all by default). One export's failure does not stop the others."""
    clock = time.perf_counter()
    selected = [loaded.export(n) for n in exports] if exports else list(loaded.config.exports)
    state = StateStore(loaded.base_dir / STATE_FILE)
    results: list[ExportResult] = []
    try:
        for export in selected:
            try:
                plan = build_plan(loaded, export)
            except Exception as e:  # noqa: BLE001 - a bad plan fails this export only
                result = ExportResult(name=export.name, run_id=run_id_for(export.name, utc_now()), status="failed")
                result.error, result.error_type = str(e), type(e).__name__
                result.exit_code, result.exception = exit_code_for(e), e
            else:
                result = run_export(plan, state, resume=resume)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        state.close()
    return RunResult(results, time.perf_counter() - clock, str(loaded.path) if loaded.path else None)

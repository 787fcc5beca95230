"""How a run behaves beyond its config: the flags of ``rivet run`` that every engine honours."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from rivet.core.events import Observer
    from rivet.execution.cluster import Cluster
    from rivet.execution.results import ExportResult
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore


@dataclass(frozen=True)
class RunOptions:
    """Flags of one run.

    Attributes:
        resume: continue the unfinished checkpointed chunked runs (a fresh run when there is none).
        wait: wait for a running run of the same export instead of being refused.
        validate: read every new part back (rows, SHA-256) before the run commits.
        reconcile: count every read's rows with COUNT(*) in its own snapshot and compare.
    """

    resume: bool = False
    wait: bool = False
    validate: bool = False
    reconcile: bool = False
    cluster: Cluster | None = dataclasses.field(default=None, compare=False)
    # Where telemetry is configured: wraps each export's observer in one that makes its spans.
    traced: Callable[[ExportPlan, Observer | None], Observer] | None = dataclasses.field(default=None, compare=False)

    def shape(self, plan: ExportPlan) -> ExportPlan:
        """``plan`` with these flags' checks."""
        return dataclasses.replace(plan, validate=self.validate, reconcile=self.reconcile)

    def run(self, plan: ExportPlan, state: StateStore | None, observer: Observer | None = None) -> ExportResult:
        """Run ``plan`` with these flags (and on the cluster, if any)."""
        from rivet.execution import run_export

        if self.traced is not None:
            try:
                observer = self.traced(plan, observer)
            except Exception as e:  # noqa: BLE001 - tracing never stops an export
                logging.getLogger("rivet").warning("telemetry: export %s is not traced: %s", plan.name, e)
        return run_export(
            self.shape(plan), state, resume=self.resume, wait=self.wait, observer=observer, cluster=self.cluster
        )

    def flags(self) -> list[str]:
        """The same options as ``rivet run`` flags (for child processes)."""
        flags = [f"--{name}" for name in ("resume", "wait", "validate", "reconcile") if getattr(self, name)]
        if self.cluster is not None:
            flags += ["--dask-scheduler", self.cluster.address]
        return flags

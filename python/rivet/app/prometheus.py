"""The exports' metrics in the Prometheus text exposition format, from the state store alone.

For node_exporter's textfile collector or a sidecar that serves the file: counters sum
every run the store holds (a store pruned or reset starts them again, which Prometheus
reads as a counter reset); gauges describe each export's last run. Labels are the
export's name and mode, the source's kind and the destination's scheme: never a URL,
a path or anything else that could hold a secret.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rivet.core.runinfo import from_iso

if TYPE_CHECKING:
    from rivet.config import LoadedConfig
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey

# How a run ended, as the state store says, that published its output; that succeeded; that did not.
PUBLISHED = ("success", "empty")
SUCCEEDED = (*PUBLISHED, "skipped")
FAILED = ("failed", "interrupted")
# rivet_export_freshness_status of each verdict of rivet check --freshness.
FRESHNESS_LEVELS = {"fresh": 0, "warn": 1, "error": 2}


@dataclass
class Family:
    """One metric: its help, its type, and a value per label set."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float) -> None:
        """One sample."""
        self.samples.append((labels, value))

    def render(self) -> list[str]:
        """Its lines of the exposition."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            shown = ",".join(f'{k}="{_escaped(v)}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{shown}}} {_number(value)}")
        return lines


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


FAMILIES = (
    ("rivet_export_runs_total", "counter", "Runs of the export the state store holds, by how they ended."),
    ("rivet_export_failures_total", "counter", "Runs of the export that failed or were interrupted."),
    ("rivet_export_retries_total", "counter", "Reads retried after a transient fault, over every run."),
    ("rivet_export_rows_total", "counter", "Rows published, over every run that published."),
    ("rivet_export_bytes_total", "counter", "Bytes of parts published, over every run that published."),
    ("rivet_export_files_total", "counter", "Parts published, over every run that published."),
    ("rivet_export_last_run_timestamp_seconds", "gauge", "When the export's last run started (unix time)."),
    ("rivet_export_last_run_success", "gauge", "1 when the export's last run succeeded, else 0."),
    ("rivet_export_last_run_duration_seconds", "gauge", "How long the export's last run took."),
    ("rivet_export_last_run_rows", "gauge", "Rows the export's last run published."),
    ("rivet_export_last_run_bytes", "gauge", "Bytes the export's last run published."),
    ("rivet_export_last_run_peak_memory_bytes", "gauge", "Peak resident memory of the export's last run."),
    ("rivet_export_last_run_read_seconds", "gauge", "Seconds the last run's reads (statements on the source) lasted."),
    ("rivet_export_last_run_longest_read_seconds", "gauge", "How long the last run's longest read lasted."),
    ("rivet_export_last_success_timestamp_seconds", "gauge", "When the export's last successful run started."),
    ("rivet_export_freshness_status", "gauge", "0 fresh, 1 past freshness.warn_after, 2 past error_after."),
    ("rivet_cdc_lag_seconds", "gauge", "Seconds since what a change capture published was current."),
    ("rivet_cdc_lag_bytes", "gauge", "Bytes of log behind the log's end a change capture's last run started."),
)


def exposition(loaded: LoadedConfig, store: StateStore, names: Iterable[str], keys: Iterable[ExportKey]) -> str:
    """The text exposition of ``names`` (with their state ``keys``)."""
    return render(families(loaded, store, names, keys))


def render(found: dict[str, Family]) -> str:
    """The text exposition of metric families (those with samples)."""
    lines = [line for family in found.values() if family.samples for line in family.render()]
    return "\n".join(lines) + "\n"


def export_labels(loaded: LoadedConfig, name: str) -> dict[str, str]:
    """The labels of an export's metrics (and the attributes of its spans): nothing that could hold a secret."""
    return {
        "export": name,
        "mode": loaded.export(name).mode,
        "source": loaded.config.source.type,
        "destination": _scheme(loaded, name),
    }


def families(
    loaded: LoadedConfig, store: StateStore, names: Iterable[str], keys: Iterable[ExportKey]
) -> dict[str, Family]:
    """Every metric of ``names`` (with their state ``keys``), by name."""
    from rivet.app.freshness import verdict
    from rivet.app.lag import cdc_lag
    from rivet.core.runinfo import utc_now

    families = {name: Family(name, kind, text) for name, kind, text in FAMILIES}
    for name, key in zip(names, keys, strict=True):
        export = loaded.export(name)
        labels = export_labels(loaded, name)
        _totals(families, labels, store.run_totals(key))
        runs = store.runs([key], limit=1)
        if runs:
            _last_run(families, labels, runs[0])
        last = store.last_success(key, skipped_too=True)
        if last is not None:
            families["rivet_export_last_success_timestamp_seconds"].add(labels, _unix(last["started_at"]))
        if (limits := loaded.config.freshness_of(export)) is not None:
            judged = verdict(name, limits, last, utc_now())
            families["rivet_export_freshness_status"].add(labels, FRESHNESS_LEVELS[judged.status])
        if export.mode == "cdc":
            lag = cdc_lag(name, store, key)
            if lag["seconds_behind"] is not None:
                families["rivet_cdc_lag_seconds"].add(labels, lag["seconds_behind"])
            if lag["bytes_behind_at_start"] is not None:
                families["rivet_cdc_lag_bytes"].add(labels, lag["bytes_behind_at_start"])
    return families


def _totals(families: dict[str, Family], labels: dict[str, str], totals: list[dict[str, Any]]) -> None:
    published = [t for t in totals if t["status"] in PUBLISHED]
    for total in totals:
        families["rivet_export_runs_total"].add({**labels, "status": total["status"]}, total["runs"])
    families["rivet_export_failures_total"].add(labels, sum(t["runs"] for t in totals if t["status"] in FAILED))
    families["rivet_export_retries_total"].add(labels, sum(t["retries"] or 0 for t in totals))
    for column in ("rows", "bytes", "files"):
        families[f"rivet_export_{column}_total"].add(labels, sum(t[column] or 0 for t in published))


def _last_run(families: dict[str, Family], labels: dict[str, str], run: dict[str, Any]) -> None:
    families["rivet_export_last_run_timestamp_seconds"].add(labels, _unix(run["started_at"]))
    families["rivet_export_last_run_success"].add(labels, 1 if run["status"] in SUCCEEDED else 0)
    if run["duration_ms"] is not None:
        families["rivet_export_last_run_duration_seconds"].add(labels, run["duration_ms"] / 1000)
    families["rivet_export_last_run_rows"].add(labels, run["rows"] or 0)
    families["rivet_export_last_run_bytes"].add(labels, run["bytes"] or 0)
    if run["peak_rss_mb"] is not None:
        families["rivet_export_last_run_peak_memory_bytes"].add(labels, round(run["peak_rss_mb"] * 1024 * 1024))
    if run.get("read_s") is not None:
        families["rivet_export_last_run_read_seconds"].add(labels, run["read_s"])
        families["rivet_export_last_run_longest_read_seconds"].add(labels, run["longest_read_s"])


def _unix(iso_time: str) -> float:
    return round(from_iso(iso_time).timestamp(), 3)


def _scheme(loaded: LoadedConfig, name: str) -> str:
    """The destination's kind (``file``, ``s3``, ``gs``, ``az``, ``stdout``): its URL's scheme, nothing more."""
    from rivet.config.layout import destination_urls

    return scheme_of(destination_urls(loaded).get(name, ""))


def scheme_of(url: str) -> str:
    """A destination URL's kind (``file`` for a path): its scheme, nothing more."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isalnum() else "file"


def config_families(loaded: LoadedConfig) -> dict[str, Family]:
    """Every metric of every export of the config, from its state store."""
    from rivet.plan.export import key_in_store
    from rivet.state import StateStore, state_location

    store = StateStore(state_location(loaded.base_dir))
    try:
        names = [e.name for e in loaded.config.exports]
        keys = [key_in_store(loaded, store, name) for name in names]
        return families(loaded, store, names, keys)
    finally:
        store.close()


def write_metrics_file(loaded: LoadedConfig, path: Path) -> None:
    """Write every export's metrics to ``path``, whole or not at all (``rivet run --metrics-file``)."""
    write_atomically(path, render(config_families(loaded)))


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)  # the collector usually runs as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

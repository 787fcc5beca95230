"""OpenTelemetry: a span for each run, export and chunk, and the exports' metrics, sent over OTLP.

Configured by ``telemetry:`` in rivet.yaml or by the standard ``OTEL_EXPORTER_OTLP_*``
variables alone; needs the ``rivet[otel]`` extra. Spans are made from the run's events
(``started``, ``chunk``, ``retry``, ``finished``), so every engine that reports them is
traced the same way: this process's threads, a Dask cluster (chunks are reported where
they are committed), and fan-out children, each sending its own spans under the parent's
run span (passed as ``TRACEPARENT``, which an orchestrator may set for the parent too).
The metrics are the ones ``rivet metrics --format prometheus`` prints, from the state
store, sent once at the end of the run by the process that started it.

Telemetry never decides an export's outcome: a collector that is down or refuses costs a
warning (after ``timeout_s``), and the run's result stands.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rivet.core.events import Observer
from rivet.core.redact import redact_text, redact_url
from rivet.core.runinfo import from_iso
from rivet.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from rivet.app.prometheus import Family
    from rivet.config import LoadedConfig
    from rivet.plan.export import ExportPlan

log = logging.getLogger("rivet")

# The standard variables that name a collector (the SDK reads them, and the headers and timeouts beside them).
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
# Where the parent's run span is passed to children (the W3C trace context header).
TRACEPARENT = "TRACEPARENT"
# Set for fan-out children: their parent sends the metrics, once, for every export.
METRICS_SENT_BY_PARENT = "RIVET_OTEL_METRICS_BY_PARENT"
UNITS = {"_seconds": "s", "_bytes": "By"}
# How many collector timeouts the end of a run waits for its telemetry (spans, then metrics).
SENDING_TIMEOUTS = 3


def start_telemetry(loaded: LoadedConfig) -> Telemetry | None:
    """The run's telemetry, or None when neither the config nor the environment asks for it."""
    settings = loaded.config.telemetry
    from_environment = any(os.environ.get(v) for v in ENDPOINT_VARIABLES)
    if settings is None and not from_environment:
        return None
    where = "telemetry:" if settings is not None else "OTEL_EXPORTER_OTLP_ENDPOINT"
    if settings is not None and settings.otlp_endpoint is None and not from_environment:
        raise ConfigError(
            f"{loaded.path or 'the config'}: telemetry: needs otlp_endpoint (http://collector:4318) "
            "or the OTEL_EXPORTER_OTLP_ENDPOINT variable"
        )
    protocol = next((os.environ[v] for v in PROTOCOL_VARIABLES if os.environ.get(v)), "http/protobuf")
    if protocol != "http/protobuf" and (settings is None or settings.otlp_endpoint is None):
        message = (
            f"{where}: rivet sends OTLP over HTTP (http/protobuf), not {protocol}: "
            "point it at the collector's HTTP port (4318)"
        )
        if settings is not None:
            raise ConfigError(message)
        log.warning("%s; no telemetry is sent", message)
        return None
    try:
        import opentelemetry.exporter.otlp.proto.http.metric_exporter
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401 - only looked for
    except ImportError:
        message = f"{where} asks for OpenTelemetry, which needs the otel extra: pip install 'rivet[otel]'"
        if settings is not None:
            raise ConfigError(message) from None
        log.warning("%s; no telemetry is sent", message)
        return None
    try:
        return Telemetry(loaded, metrics=os.environ.get(METRICS_SENT_BY_PARENT) != "1")
    except Exception as e:  # noqa: BLE001 - the SDK refusing its settings (OTEL_BSP_*, ...) costs the telemetry only
        log.warning("telemetry: the OpenTelemetry SDK could not start (%s); no telemetry is sent", redact_text(str(e)))
        return None


class Telemetry:
    """One run's tracer and (where asked) its metrics, until ``finish``."""

    def __init__(self, loaded: LoadedConfig, *, metrics: bool) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from rivet.core.version import __version__

        settings = loaded.config.telemetry
        self.loaded = loaded
        self.metrics = metrics
        self.endpoint = settings.otlp_endpoint.rstrip("/") if settings and settings.otlp_endpoint else None
        self.headers = {k: v.get_secret_value() for k, v in settings.headers.items()} if settings else {}
        self.timeout_s = settings.timeout_s if settings else 10.0
        named = settings is not None and "service_name" in settings.model_fields_set
        name = settings.service_name if settings and named else os.environ.get("OTEL_SERVICE_NAME") or "rivet"
        self.resource = Resource.create({"service.name": name, "service.version": __version__})
        # A provider of its own, not the global one: a notebook's or an application's tracing is left
        # alone; shut down by finish(), within its time, never by an exit handler that could wait on it.
        self.provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self.spans = Delivery(self._exporter("traces"), self.timeout_s)
        self.provider.add_span_processor(BatchSpanProcessor(self.spans))  # type: ignore[arg-type]  # a SpanExporter
        self.tracer = self.provider.get_tracer("rivet", __version__)
        parent = os.environ.get(TRACEPARENT)
        context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
        # Attributes, like metric labels, name kinds and exports: never a URL or a path.
        attributes = {"rivet.source": loaded.config.source.type}
        self.run_span = self.tracer.start_span("rivet run", context=context, attributes=attributes)
        self.run_context = trace.set_span_in_context(self.run_span)
        self.said_all = False

    def _exporter(self, signal: str) -> Any:
        """The OTLP/HTTP exporter of ``traces`` or ``metrics``.

        To the configured endpoint, else where the standard variables say.
        """
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter as Exporter,
            )
        endpoint = f"{self.endpoint}/v1/{signal}" if self.endpoint is not None else None
        return Exporter(endpoint=endpoint, headers=self.headers or None, timeout=self.timeout_s)

    def observer(self, plan: ExportPlan, inner: Observer | None) -> Observer:
        """An observer that turns ``plan``'s events into spans and passes each on to ``inner``."""
        from rivet.app.prometheus import scheme_of

        attributes = {
            "rivet.export": plan.name,
            "rivet.mode": plan.mode,
            "rivet.source": self.loaded.config.source.type,
            "rivet.destination": scheme_of(plan.destination.url),
        }
        return ExportSpans(self, attributes, inner)

    def propagated(self) -> dict[str, str]:
        """The environment of a fan-out child: its spans under this run's span, its metrics left to this process."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=self.run_context)
        env = {METRICS_SENT_BY_PARENT: "1"}
        if "traceparent" in carrier:
            env[TRACEPARENT] = carrier["traceparent"]
        return env

    def finish(self, *, exit_code: int) -> None:
        """End the run's span, then send what is left of the spans and, where asked, the metrics.

        The sending runs in a thread the run waits for a bounded time (a few requests'
        ``timeout_s``): a collector that is silent, slow or refusing delays the run's end by
        that much at most, and what it did not take is dropped with a warning.
        """
        from opentelemetry.trace import Status, StatusCode

        self.run_span.set_attribute("rivet.exit_code", exit_code)
        if exit_code:
            self.run_span.set_status(Status(StatusCode.ERROR, f"exit code {exit_code}"))
        self.run_span.end()
        sender = threading.Thread(target=self._send_the_rest, name="rivet-telemetry", daemon=True)
        sender.start()
        sender.join(self.timeout_s * SENDING_TIMEOUTS)
        if sender.is_alive():
            self._say_failed("spans and metrics", f"the collector did not take them within {self.timeout_s:g} s")
            self.spans.exporter.shutdown()  # ends the exporter's retries; nothing more is said
        elif self.spans.failed:
            self._say_failed("spans", self.spans.failed)
        self.said_all = True

    def _send_the_rest(self) -> None:
        try:
            self.provider.shutdown()  # exports the spans still queued
            if self.metrics:
                self._send_metrics()
        except Exception as e:  # noqa: BLE001 - the run's outcome stands
            self._say_failed("spans and metrics", str(e))

    def _send_metrics(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult

        from rivet.app.prometheus import config_families

        try:
            found = config_families(self.loaded)
        except Exception as e:  # noqa: BLE001 - the run's outcome stands; only its metrics are missing
            self._say_failed("metrics", f"reading the state store failed: {e}")
            return
        reader = InMemoryMetricReader()
        provider = MeterProvider(resource=self.resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = provider.get_meter("rivet")
        for family in found.values():
            if family.samples:
                _instrument(meter, family)
        data = reader.get_metrics_data()
        provider.shutdown()
        if data is None:
            return
        try:
            result = self._exporter("metrics").export(data, timeout_millis=self.timeout_s * 1000)
        except Exception as e:  # noqa: BLE001 - as above
            self._say_failed("metrics", str(e))
            return
        if result is not MetricExportResult.SUCCESS:
            self._say_failed("metrics", refused(self.timeout_s))

    def _say_failed(self, what: str, why: str) -> None:
        if self.said_all:  # the run is over: a sender left behind says nothing more
            return
        where = redact_url(self.endpoint) if self.endpoint else "the OTEL_EXPORTER_OTLP_* endpoint"
        log.warning("telemetry: sending the run's %s to %s failed: %s", what, where, redact_text(why))


def refused(timeout_s: float) -> str:
    """Why an export failed, as far as the SDK says."""
    return f"the collector did not take them (it refused, or did not answer within {timeout_s:g} s)"


class Delivery:
    """A span exporter that remembers why the collector did not take a batch (for one warning)."""

    def __init__(self, exporter: Any, timeout_s: float) -> None:
        self.exporter, self.timeout_s = exporter, timeout_s
        self.failed: str | None = None

    def export(self, spans: Any) -> Any:
        """Hand the batch on; note a failure."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed = refused(self.timeout_s)
        return result

    def shutdown(self) -> None:
        """Shut the exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is held here."""
        return True


def _instrument(meter: Any, family: Family) -> None:
    """An observable instrument that reports the family's samples once, when the reader collects."""
    from opentelemetry.metrics import Observation

    samples = list(family.samples)

    def observe(options: object) -> Iterable[Observation]:
        return [Observation(value, labels) for labels, value in samples]

    base = family.name.removesuffix("_total")
    # No unit where the name has none: "1" would make a Prometheus exporter add a _ratio suffix.
    unit = next((u for suffix, u in UNITS.items() if base.endswith(suffix)), "")
    make = meter.create_observable_counter if family.kind == "counter" else meter.create_observable_gauge
    make(family.name, callbacks=[observe], unit=unit, description=family.help)


class ExportSpans(Observer):
    """One export's span, with a span for each chunk and an event for each retry, made from its events."""

    def __init__(self, telemetry: Telemetry, attributes: Mapping[str, str], inner: Observer | None) -> None:
        self.telemetry = telemetry
        self.attributes = dict(attributes)
        self.inner = inner or Observer()
        self.span: Span | None = None
        self.lock = threading.Lock()  # chunk events come from the worker threads

    def emit(self, kind: str, export: str, **fields: Any) -> None:
        """Trace the event, then pass it on."""
        try:
            with self.lock:
                self._trace(kind, fields)
        except Exception as e:  # noqa: BLE001 - tracing never stops an export
            log.debug("telemetry: event %s of export %s not traced: %s", kind, export, e)
        self.inner.emit(kind, export, **fields)

    def _trace(self, kind: str, fields: dict[str, Any]) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        tracer = self.telemetry.tracer
        if kind == "started":
            self.attributes["rivet.run_id"] = str(fields.get("run_id", ""))
            name = f"export {self.attributes['rivet.export']}"
            self.span = tracer.start_span(name, context=self.telemetry.run_context, attributes=self.attributes)
            return
        if self.span is None:
            return
        if kind == "chunk":
            start = _nanoseconds(fields["started"])
            chunk = tracer.start_span(
                "chunk",
                context=trace.set_span_in_context(self.span),
                start_time=start,
                attributes={**self.attributes, "rivet.chunk": fields["chunk"], "rivet.rows": fields["rows"]},
            )
            chunk.end(end_time=start + round(fields["read_s"] * 1e9))
        elif kind == "retry":
            retry = {k: fields[k] for k in ("attempt", "reason", "wait_s") if fields.get(k) is not None}
            if fields.get("chunk") is not None:
                retry["chunk"] = fields["chunk"]
            self.span.add_event("retry", attributes=retry)
        elif kind == "finished":
            span, self.span = self.span, None
            try:
                span.set_attributes(
                    {
                        "rivet.status": str(fields.get("status")),
                        "rivet.rows": int(fields.get("rows") or 0),
                        "rivet.bytes": int(fields.get("bytes") or 0),
                        "rivet.files": len(fields.get("files") or ()),
                        "rivet.retries": int(fields.get("retries") or 0),
                    }
                )
                if fields.get("status") not in ("success", "empty", "skipped"):
                    # The error's kind only: its text may name paths, hosts and SQL.
                    span.set_status(Status(StatusCode.ERROR, str(fields.get("error_type") or fields.get("status"))))
            finally:
                span.end()


def _nanoseconds(iso_time: str) -> int:
    return round(from_iso(iso_time).timestamp() * 1e9)

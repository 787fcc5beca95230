"""The smaller blocks of rivet.yaml.

An export's meta columns, quality gates, Parquet settings and Iceberg table; the config's
notifications, telemetry, executor and state store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from rivet.config.common import (
    ICEBERG_NAME_PATTERN,
    NAMESPACE_PATTERN,
    Bool,
    NonNegativeInt,
    PositiveInt,
    StrictModel,
)
from rivet.config.sizes import parse_duration
from rivet.core.redact import HIDDEN, redact_url


class MetaColumnsConfig(StrictModel):
    """``meta_columns``: columns rivet adds to every row it writes."""

    exported_at: Bool = False
    # true: a hash of every column; a list: of those columns, in that order.
    row_hash: Bool | Annotated[list[str], Field(min_length=1)] = False

    @field_validator("row_hash")
    @classmethod
    def _once_each(cls, v: bool | list[str]) -> bool | list[str]:
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"row_hash lists a column more than once: {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "run_id" in data:
                raise ValueError(
                    "meta_columns.run_id is not supported: each part's run id is in the manifest "
                    "(manifest.json and _rivet/runs/<run_id>.json); remove the key"
                )
            if "source_file" in data:
                raise ValueError(
                    "meta_columns.source_file is not supported: the manifest lists every part with its rows; "
                    "remove the key"
                )
        return data


class QualityConfig(StrictModel):
    """``quality``: gates on the rows written, checked before anything is published."""

    row_count_min: NonNegativeInt | None = None
    row_count_max: NonNegativeInt | None = None
    null_ratio_max: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    unique_columns: list[str] = Field(default_factory=list)
    unique_max_entries: PositiveInt | None = None

    @model_validator(mode="after")
    def _bounds(self) -> QualityConfig:
        low, high = self.row_count_min, self.row_count_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"row_count_min ({low}) is above row_count_max ({high})")
        return self


class ParquetConfig(StrictModel):
    """``parquet``: how Parquet parts are laid out."""

    # auto: about target_row_group_mb of Arrow data per row group, shared by parallel workers;
    # fixed_memory: exactly that per writer; fixed_rows: row_group_rows rows per row group.
    row_group_strategy: Literal["auto", "fixed_rows", "fixed_memory"] = "auto"
    row_group_rows: PositiveInt | None = None
    target_row_group_mb: Annotated[float, Field(gt=0, le=1024)] | None = None
    max_row_group_mb: Annotated[float, Field(gt=0, le=1024)] | None = None
    data_page_size_kb: Annotated[int, Field(ge=4, le=65536)] | None = None
    statistics: Bool = True
    # auto: text columns whose first values repeat; true: every column; false: none
    dictionary: Literal["auto"] | Bool = "auto"
    # native: Parquet's UUID (16 bytes) and JSON types; string: their text (what configs written before get).
    uuid: Literal["native", "string"] = "string"
    json_: Literal["native", "string"] = Field("string", alias="json")

    @model_validator(mode="after")
    def _strategy(self) -> ParquetConfig:
        fixed_rows = self.row_group_strategy == "fixed_rows"
        if fixed_rows and self.row_group_rows is None:
            raise ValueError("row_group_strategy: fixed_rows needs row_group_rows")
        if not fixed_rows and self.row_group_rows is not None:
            raise ValueError("row_group_rows applies to row_group_strategy: fixed_rows")
        if fixed_rows and self.target_row_group_mb is not None:
            raise ValueError("target_row_group_mb applies to row_group_strategy auto or fixed_memory")
        return self


class IcebergConfig(StrictModel):
    """``iceberg``: the catalog an Iceberg export's table is registered in."""

    # sqlite:///path.db or postgresql://... (a SQL catalog), or http(s)://... (a REST catalog);
    # unset: a SQLite catalog, .rivet_iceberg.db beside the config (and its state).
    catalog_url: str | None = None
    namespace: Annotated[str, Field(pattern=ICEBERG_NAME_PATTERN)] = "rivet"
    # The table's name in the namespace; unset: the export's name (a dot in it becomes _).
    table: Annotated[str, Field(pattern=ICEBERG_NAME_PATTERN)] | None = None
    # More catalog properties, as pyiceberg names them (a REST catalog's token, warehouse, ...).
    catalog_properties: dict[str, str] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "catalog_properties" and value:
                yield name, dict.fromkeys(value, HIDDEN)
            elif name == "catalog_url" and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @field_validator("catalog_url")
    @classmethod
    def _catalog_kind(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:///", "postgresql://", "http://", "https://")):
            raise ValueError("catalog_url is sqlite:///<file>, postgresql://... or an http(s):// REST catalog")
        return v


# What an export's outcome can notify about; schema_change is the original tool's name for schema_drift.
NotifyOn = Literal["failure", "success", "schema_drift", "schema_change", "quality", "degraded"]


def _failures_only() -> list[NotifyOn]:
    return ["failure"]


class NotificationTarget(StrictModel):
    """One place to notify: its URL (or the variable holding it) and the outcomes that notify."""

    on: list[NotifyOn] = Field(default_factory=_failures_only, min_length=1)

    def _one_url(self, url: SecretStr | None, url_env: str | None, key: str) -> None:
        if (url is None) == (url_env is None):
            raise ValueError(f"give exactly one of {key} or {key}_env")


class SlackNotification(NotificationTarget):
    """``notifications.slack``: an incoming-webhook URL of Slack."""

    webhook_url: SecretStr | None = None
    webhook_url_env: str | None = None

    @model_validator(mode="after")
    def _url(self) -> SlackNotification:
        self._one_url(self.webhook_url, self.webhook_url_env, "webhook_url")
        return self


class WebhookNotification(NotificationTarget):
    """``notifications.webhook``: any HTTP endpoint that takes a JSON POST."""

    url: SecretStr | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _url(self) -> WebhookNotification:
        self._one_url(self.url, self.url_env, "url")
        return self


class FreshnessConfig(StrictModel):
    """``freshness``: how old an export's last published run may be before ``rivet check --freshness`` says so."""

    warn_after: str | int | float | None = None
    error_after: str | int | float | None = None

    @field_validator("warn_after", "error_after")
    @classmethod
    def _duration(cls, v: str | int | float | None) -> str | int | float | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _order(self) -> FreshnessConfig:
        if self.warn_after is None and self.error_after is None:
            raise ValueError("freshness needs warn_after, error_after or both (durations: 30m, 2h, 1d)")
        if self.warn_after is not None and self.error_after is not None:
            if parse_duration(self.warn_after) >= parse_duration(self.error_after):
                raise ValueError("freshness: warn_after must be shorter than error_after")
        return self

    def limits(self) -> tuple[float | None, float | None]:
        """``(warn, error)`` in seconds (None: not set)."""
        warn = parse_duration(self.warn_after) if self.warn_after is not None else None
        error = parse_duration(self.error_after) if self.error_after is not None else None
        return warn, error


class DefaultsConfig(StrictModel):
    """``defaults``: settings every export takes unless it sets its own."""

    freshness: FreshnessConfig | None = None


class NotificationsConfig(StrictModel):
    """``notifications``: messages sent after a run about the exports whose outcome asks for one."""

    slack: SlackNotification | None = None
    webhook: WebhookNotification | None = None


class TelemetryConfig(StrictModel):
    """``telemetry``: a span for each run, export and chunk, and the exports' metrics, sent over OTLP.

    OTLP over HTTP (protobuf) to ``otlp_endpoint`` (``http://collector:4318``; ``/v1/traces``
    and ``/v1/metrics`` are added), or where the standard ``OTEL_EXPORTER_OTLP_*`` variables
    say when it is not set. Needs the ``rivet[otel]`` extra.
    """

    otlp_endpoint: str | None = None
    # Sent with every request (an API key, say): values are secrets, never shown.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    service_name: str = Field(default="rivet", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError(
                f"otlp_endpoint must be an http:// or https:// URL (OTLP over HTTP, port 4318 by default), "
                f"not {redact_url(v)!r}"
            )
        return v


class ExecutorConfig(StrictModel):
    """``executor``: where the chunks of chunked exports are read.

    ``local`` (the default): threads of this process. ``dask``: the workers of the Dask
    cluster whose scheduler is at ``address`` (``tcp://host:8786``); this process plans,
    keeps the state and publishes.
    """

    type: Literal["local", "dask"] = "local"
    address: str | None = None
    # Use a scheduler reached over plain tcp:// although the exports have credentials (anyone who
    # reaches it can run code on the workers, which hold them). tls:// needs no such consent.
    allow_plaintext: Bool = False

    @model_validator(mode="after")
    def _address(self) -> ExecutorConfig:
        if self.type == "dask" and not self.address:
            raise ValueError("executor: type dask needs the scheduler's address (address: tcp://host:8786)")
        return self


class StateConfig(StrictModel):
    """``state:``: where this config's exports keep their state in a shared state store."""

    # Rows of the state store belong to this namespace instead of one derived from each export's
    # source, table or query and destination: a config that moves (or whose URL changes) keeps its state.
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] | None = None

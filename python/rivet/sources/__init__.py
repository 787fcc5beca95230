"""Sources: where rows come from, and how a query is described and streamed."""

from __future__ import annotations

from rivet.sources.base import ColumnOverrides, Source, parse_overrides
from rivet.sources.resolve import AnySource, resolve_source

__all__ = ["AnySource", "ColumnOverrides", "Source", "parse_overrides", "resolve_source"]

"""Notifications after a run: a JSON webhook and Slack, one message per export whose outcome asks for one.

Outcomes: ``failure`` (failed or interrupted), ``success``, ``schema_drift`` (the
columns changed, whatever the policy; the original tool's ``schema_change`` is the
same), ``quality`` (a quality gate failed) and ``degraded`` (succeeded, but after
retries or with warnings). A notification that cannot be sent is a warning: it never
changes the run's outcome or exit code. The URLs carry secrets (Slack's hold a
token), so messages show only their host.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rivet.core.redact import redact_text
from rivet.core.version import __version__

if TYPE_CHECKING:
    from pydantic import SecretStr

    from rivet.config.blocks import NotificationsConfig
    from rivet.execution.results import ExportResult

log = logging.getLogger("rivet")

TIMEOUT_S = 10.0
ALIASES = {"schema_change": "schema_drift"}
# Slack attachment colours: red for a failure, orange for a warning, green otherwise.
COLORS = {"failure": "#d00000", "quality": "#d00000", "schema_drift": "#ff9900", "degraded": "#ff9900"}


def outcomes(result: dict[str, Any]) -> set[str]:
    """What an export's result (its ``--json`` form) can notify about."""
    failed = result["status"] in ("failed", "interrupted")
    found = {"failure"} if failed else {"success"}
    if result.get("schema_drift") or result.get("error_type") == "SchemaDriftError":
        found.add("schema_drift")
    if result.get("error_type") == "QualityError":
        found.add("quality")
    if not failed and (result.get("retries") or result.get("warnings")):
        found.add("degraded")
    return found


def send_notifications(settings: NotificationsConfig | None, results: Iterable[ExportResult]) -> int:
    """Send what ``settings`` asks for about ``results``; how many messages went out."""
    if settings is None:
        return 0
    targets = []
    if settings.slack is not None:
        s = settings.slack
        targets.append(("slack", s.webhook_url, s.webhook_url_env, s.on, slack_message))
    if settings.webhook is not None:
        w = settings.webhook
        targets.append(("webhook", w.url, w.url_env, w.on, webhook_message))
    sent = 0
    for result in results:
        shown = result.to_dict()
        found = outcomes(shown)
        for kind, url, url_env, on, message in targets:
            wanted = found & {ALIASES.get(o, o) for o in on}
            if not wanted:
                continue
            target = _url(kind, url, url_env)
            if target is not None and _post(kind, target, message(shown, wanted)):
                sent += 1
    return sent


def _url(kind: str, url: SecretStr | None, url_env: str | None) -> str | None:
    if url is not None:
        return url.get_secret_value()
    value = os.environ.get(url_env or "", "").strip()
    if not value:
        log.warning("notifications.%s: environment variable %s is not set; nothing was sent", kind, url_env)
        return None
    return value


def webhook_message(result: dict[str, Any], outcome: set[str]) -> dict[str, Any]:
    """The JSON a webhook receives."""
    export = {k: v for k, v in result.items() if k != "files"} | {"files": len(result["files"])}
    if export.get("error"):
        export["error"] = redact_text(str(export["error"]))
    return {
        "source": "rivet",
        "version": __version__,
        "host": socket.gethostname(),
        "outcome": sorted(outcome),
        "export": export,
    }


def slack_message(result: dict[str, Any], outcome: set[str]) -> dict[str, Any]:
    """A Slack incoming-webhook message: a title, and the numbers in a coloured attachment."""
    name, status = result["name"], result["status"]
    color = next((COLORS[o] for o in ("failure", "quality", "schema_drift", "degraded") if o in outcome), "#2eb886")
    lines = [
        f"status: {status}",
        f"rows: {result['rows']:,}",
        f"files: {len(result['files'])}",
        f"duration: {result['duration_s']:.1f} s",
    ]
    if result.get("error"):
        lines.append(f"error: {redact_text(str(result['error']))}")
    drift = result.get("schema_drift") or {}
    changes = ", ".join(f"{len(v)} {k}" for k, v in drift.items() if v)
    if changes:
        lines.append(f"schema changed: {changes}")
    if result.get("retries"):
        lines.append(f"retries: {result['retries']}")
    title = f"rivet: export {name} {'failed' if 'failure' in outcome else status}"
    return {
        "text": title,
        "attachments": [{"color": color, "title": f"{name} on {socket.gethostname()}", "text": "\n".join(lines)}],
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answers; it does not send the message (and its secret URL's payload) elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Follow no redirect: the 3xx answer is the outcome."""
        return None


def _post(kind: str, url: str, payload: dict[str, Any]) -> bool:
    """POST ``payload`` as JSON; False (and a warning) when it did not arrive."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or '?'}"
    if parts.scheme not in ("http", "https"):
        log.warning("notifications.%s: %s is not an http(s) URL; nothing was sent", kind, shown)
        return False
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"rivet/{__version__}"},
        method="POST",
    )
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=TIMEOUT_S) as response:
            response.read(1024)
        return True
    except urllib.error.HTTPError as e:
        log.warning("notifications.%s: %s answered %d %s; the run's outcome stands", kind, shown, e.code, e.reason)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        log.warning("notifications.%s: sending to %s failed (%s); the run's outcome stands", kind, shown, reason)
    return False

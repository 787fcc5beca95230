"""One redactor for everything that may carry a secret on its way to a log, an artifact or a message.

Connection URLs (``scheme://user:password@host``, passwords with any characters),
libpq key=value strings (``password=...``), and URLs whose query carries a token
(S3 presigned ``X-Amz-Signature``, Azure SAS ``sig``, ``token``, ``secret`` ...).
"""

from __future__ import annotations

import re

HIDDEN = "***"
# Query or DSN keys whose values are secrets.
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|sig|credential|key|auth", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_DSN_PAIR = re.compile(r"\b(\w*(?:pass|pwd|secret|token)\w*)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        key, sep, _ = pair.partition("=")
        pairs.append(f"{key}={HIDDEN}" if sep and _SECRET_KEY.search(key) else pair)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values hidden (a DSN: its secret values)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _DSN_PAIR.sub(lambda m: f"{m.group(1)}={HIDDEN}", url)
    # Everything before the last '@' is user information, whatever the password holds.
    userinfo, at, tail = rest.rpartition("@")
    shown = ""
    if at:
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{HIDDEN}@" if colon else f"{userinfo}@"
    host, question, query = tail.partition("?")
    return f"{scheme}://{shown}{host}" + (f"?{_query(query)}" if question else "")


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Free text (an error message) with every URL and DSN secret redacted, and ``secrets`` removed."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _DSN_PAIR.sub(lambda m: f"{m.group(1)}={HIDDEN}", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, HIDDEN)
    return text

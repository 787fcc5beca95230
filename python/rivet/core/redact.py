"""One redactor for everything that may carry a secret on its way to a log, an artifact or a message.

Connection URLs (``scheme://user:password@host``, passwords with any characters, even
spaces in free text), libpq key=value strings (``password=...``), URLs whose query
carries a token (S3 presigned ``X-Amz-Signature``, Azure SAS ``sig``, ``token``,
``secret`` ...), a token given as a URL's user name, and webhook URLs whose path is
their secret (Slack, Discord, Teams, or any random-looking path segment).
"""

from __future__ import annotations

import re

HIDDEN = "***"
# Query or DSN keys whose values are secrets.
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|sig|credential|key|auth", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_DSN_PAIR = re.compile(r"\b(\w*(?:pass|pwd|secret|token)\w*)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# In free text a password may hold spaces: it runs to the '@' before a host and the path or end.
_SPACED_PASSWORD = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)(.*?)(@[A-Za-z0-9.\-\[\]]+(?::\d+)?(?=[/?#\s'\"]|$))", re.MULTILINE
)
# Hosts whose webhook URLs carry their secret in the path.
_SECRET_PATH_HOSTS = re.compile(
    r"(^|\.)(hooks\.slack\.com|discord(app)?\.com|webhook\.office\.com|outlook\.office\.com)$", re.IGNORECASE
)
# A path segment that looks like a token: long, and mixing upper case, lower case and digits.
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*[a-z])(?=[^/]*[A-Z])(?=[^/]*\d)[A-Za-z0-9_-]{20,}$")
_TOKEN_USER = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_.~-]{20,}$")
_WEB = ("http", "https", "ws", "wss")


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
        if colon:
            shown = f"{user}:{HIDDEN}@"
        else:
            # A user name alone is often a token (https://<token>@host, a webhook's key).
            token = scheme.lower() in _WEB or _TOKEN_USER.match(userinfo)
            shown = f"{HIDDEN}@" if token else f"{userinfo}@"
    host, question, query = tail.partition("?")
    if scheme.lower() in _WEB:
        host = _path(host)
    return f"{scheme}://{shown}{host}" + (f"?{_query(query)}" if question else "")


def _path(host_and_path: str) -> str:
    """``host/path`` with a webhook's secret path, or any token-like segment, hidden."""
    host, slash, path = host_and_path.partition("/")
    if not slash:
        return host
    if _SECRET_PATH_HOSTS.search(host.rsplit(":", 1)[0]):
        return f"{host}/{HIDDEN}"
    return f"{host}/" + "/".join(HIDDEN if _TOKEN_SEGMENT.match(seg) else seg for seg in path.split("/"))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Free text (an error message) with every URL and DSN secret redacted, and ``secrets`` removed."""
    text = _SPACED_PASSWORD.sub(lambda m: f"{m.group(1)}{HIDDEN}{m.group(3)}", text)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _DSN_PAIR.sub(lambda m: f"{m.group(1)}={HIDDEN}", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, HIDDEN)
    return text

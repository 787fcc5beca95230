"""``${VAR}`` expansion in configuration values (never in keys or comments).

``${VAR:-default}`` takes ``default`` when ``VAR`` is unset or empty, as in a shell;
``$${VAR}`` is a literal ``${VAR}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rivet.errors import ConfigError

# ``$${NAME}`` is an escaped, literal ``${NAME}``.
_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")


def key_path(parts: tuple[Any, ...]) -> str:
    """Render a location such as ``('exports', 0, 'query')`` as ``exports[0].query``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "(top level)"


_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def expand(value: Any, variables: Mapping[str, str], path: tuple[Any, ...] = (), unset: list[str] | None = None) -> Any:
    """Return ``value`` with every ``${NAME}`` in its strings replaced.

    With ``unset`` (an offline check), a variable that is not set is left as written
    and its name appended there instead of failing.

    Raises:
        ConfigError: a referenced variable is not set (the message names the key).
    """
    if isinstance(value, dict):
        return {k: expand(v, variables, (*path, k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, variables, (*path, i), unset) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, reference = match.group(1), match.group(2)
        if escaped:
            return "${" + reference + "}"
        parsed = _NAME.fullmatch(reference)
        if parsed is None:
            raise ConfigError(f"{key_path(path)}: '${{{reference}}}' is not a valid variable reference")
        name, default = parsed.group(1), parsed.group(2)
        if variables.get(name):
            return variables[name]
        if default is not None:
            return default
        if name in variables:
            return variables[name]
        if unset is not None:
            unset.append(name)
            return match.group(0)
        raise ConfigError(
            f"{key_path(path)}: environment variable {name} is not set "
            f"(referenced as ${{{name}}}); set it, or write $${{{name}}} for a literal"
        )

    return _REFERENCE.sub(replace, value)

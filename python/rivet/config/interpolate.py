"""``${VAR}`` expansion in configuration values (never in keys or comments)."""

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


def expand(value: Any, variables: Mapping[str, str], path: tuple[Any, ...] = ()) -> Any:
    """Return ``value`` with every ``${NAME}`` in its strings replaced.

    Raises:
        ConfigError: a referenced variable is not set (the message names the key).
    """
    if isinstance(value, dict):
        return {k: expand(v, variables, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, variables, (*path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return "${" + name + "}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{key_path(path)}: '${{{name}}}' is not a valid variable reference")
        if name not in variables:
            raise ConfigError(
                f"{key_path(path)}: environment variable {name} is not set "
                f"(referenced as ${{{name}}}); set it, or write $${{{name}}} for a literal"
            )
        return variables[name]

    return _REFERENCE.sub(replace, value)

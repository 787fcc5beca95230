"""Table names as a config writes them, read into the exact names of their parts.

``table:`` takes two forms, part by part: a bare part is the exact name
(``h2.User`` is the table ``User``, whatever its case), and a part in the dialect's
quotes is read as SQL reads it (``h2."User"``, ``"my.schema"."Table"``,
`` `shop`.`Order` ``; a quote inside is doubled). The reverse, :func:`written`,
gives the text that reads back as the same names.
"""

from __future__ import annotations

from rivet.errors import ConfigError


def parse(text: str, quote: str, max_parts: int) -> tuple[str, ...]:
    """The exact names of the parts of ``text`` (``[schema.]table``), or a ConfigError naming the problem."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == quote:
            name, i = _quoted(text, i + 1, quote)
            while i < n and text[i].isspace():
                i += 1
        else:
            start = i
            while i < n and text[i] != ".":
                if text[i] == quote:
                    raise ConfigError(
                        f"table: '{text}': a name with {quote} in it is written in quotes, the quote doubled"
                    )
                i += 1
            name = text[start:i].strip()
        if not name:
            raise ConfigError(f"table: '{text}' has an empty name; it is written [schema.]table")
        if "\x00" in name:
            raise ConfigError(f"table: {text!r}: a name cannot hold a NUL character")
        parts.append(name)
        if i == n:
            break
        if text[i] != ".":
            raise ConfigError(f"table: '{text}': expected '.' or the end after {quote}{name}{quote}")
        i += 1
    if len(parts) > max_parts:
        raise ConfigError(f"table: '{text}' has {len(parts)} parts; it is written [schema.]table")
    return tuple(parts)


def _quoted(text: str, i: int, quote: str) -> tuple[str, int]:
    name = []
    while i < len(text):
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                name.append(quote)
                i += 2
                continue
            return "".join(name), i + 1
        name.append(text[i])
        i += 1
    raise ConfigError(f"table: '{text}': a quoted name is not closed")


def written(parts: tuple[str, ...], quote: str) -> str:
    """The ``table:`` text that reads back as ``parts``: bare where a part can be, else quoted."""
    return ".".join(p if _bare(p, quote) else quote + p.replace(quote, quote * 2) + quote for p in parts)


def _bare(part: str, quote: str) -> bool:
    return (
        part == part.strip()
        and "." not in part
        and quote not in part
        and part.isprintable()
        and not part.startswith(("'", '"', "`"))
    )

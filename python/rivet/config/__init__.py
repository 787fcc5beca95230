"""Loading rivet.yaml: parse, expand ``${VAR}`` in values, validate, explain errors."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from rivet.config.common import TuningConfig
from rivet.config.connection import DestinationConfig, FileSourceConfig, ServerSourceConfig, SourceConfig, TlsConfig
from rivet.config.interpolate import expand, key_path
from rivet.config.layout import check_layout
from rivet.config.models import ExportConfig, RivetConfig
from rivet.errors import ConfigError

__all__ = [
    "DestinationConfig",
    "ExportConfig",
    "FileSourceConfig",
    "LoadedConfig",
    "RivetConfig",
    "ServerSourceConfig",
    "SourceConfig",
    "TlsConfig",
    "TuningConfig",
    "load_config",
    "parse_config",
]


# A config expands to far fewer values; more means aliases that multiply (a "billion laughs").
MAX_NODES = 100_000


class DuplicateKey(yaml.YAMLError):
    """A mapping that gives the same key twice (YAML would keep the last silently)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader, refusing duplicate keys."""


def _unique_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKey(
                f"duplicate key '{key}' at line {key_node.start_mark.line + 1}: YAML would silently keep the last"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

# Booleans as YAML 1.2 (and the original tool) read them: only true and false. YAML 1.1 would read
# the key of `on: [failure]` as True, and a value such as `no` or `off` as false.
BOOL_TAG = "tag:yaml.org,2002:bool"
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _expanded_size(value: Any) -> int:
    """How many values ``value`` holds once aliases are expanded (counting stops past the limit)."""
    count, stack = 0, [value]
    while stack and count <= MAX_NODES:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and where it came from."""

    config: RivetConfig
    path: Path | None
    base_dir: Path
    # What ``${NAME}`` expands to (the environment, then --param values): query files use it too.
    # Never in a repr: the environment holds secrets.
    variables: Mapping[str, str] = field(default_factory=dict, repr=False)
    # An offline check's variables that are not set here, left as written.
    unset: tuple[str, ...] = ()

    def export(self, name: str) -> ExportConfig:
        """The export called ``name``."""
        for e in self.config.exports:
            if e.name == name:
                return e
        names = [e.name for e in self.config.exports]
        raise ConfigError(
            f"no export named '{name}' in {self.path or 'the config'}{_did_you_mean(name, names)} "
            f"(exports: {', '.join(names)})"
        )


def load_config(
    path: str | os.PathLike[str], params: Mapping[str, str] | None = None, *, offline: bool = False
) -> LoadedConfig:
    """Read and validate a rivet.yaml.

    Args:
        path: the file.
        params: values for ``${NAME}`` that take precedence over the environment.
        offline: a check without the run's environment: unset ``${NAME}`` are left as written.

    Raises:
        ConfigError: the file is missing, malformed or invalid; the message names the key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    return parse_config(text, base_dir=p.resolve().parent, params=params, origin=p, offline=offline)


def parse_config(
    text: str,
    *,
    base_dir: Path,
    params: Mapping[str, str] | None = None,
    origin: Path | None = None,
    offline: bool = False,
) -> LoadedConfig:
    """Validate YAML text (see :func:`load_config`)."""
    where = str(origin) if origin else "config"
    try:
        raw = yaml.load(text, Loader=StrictLoader)
    except DuplicateKey as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: malformed YAML{at}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'source' and 'exports' at the top level")
    if _expanded_size(raw) > MAX_NODES:
        raise ConfigError(
            f"{where}: the document expands to more than {MAX_NODES:,} values (anchors and aliases that "
            "repeat each other); refusing it"
        )
    variables = {**os.environ, **(params or {})}
    unset: list[str] | None = [] if offline else None
    try:
        raw = expand(raw, variables, unset=unset)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:
        config = RivetConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: invalid configuration\n" + format_errors(e, raw)) from None
    loaded = LoadedConfig(config, origin, base_dir, variables, tuple(dict.fromkeys(unset or ())))
    try:
        check_layout(loaded)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return loaded


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_at(loc: tuple[Any, ...], raw: Any) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (in a tagged union, the member ``raw`` chose)."""
    model: Any = RivetConfig
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _model_for(field.annotation, _raw_at(raw, loc[: i + 1]))
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _model_for(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model inside ``annotation`` that ``value`` is read as: the one whose ``type`` it names, else the first."""
    models = _inner_models(annotation)
    for model in models:
        tag = model.model_fields.get("type")
        if tag is not None and isinstance(value, dict) and value.get("type") in get_args(tag.annotation):
            return model
    return models[0] if models else None


def _inner_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) or () for m in _inner_models(arg)]


def _without_tags(loc: tuple[Any, ...], raw: Any) -> tuple[Any, ...]:
    """``loc`` without pydantic's branch labels: a union member's name, or the ``type`` a tagged union chose."""
    clean: list[Any] = []
    for part in loc:
        node = _raw_at(raw, tuple(clean))
        chosen_tag = isinstance(node, dict) and part not in node and node.get("type") == part
        if not (_is_branch_tag(part) or chosen_tag):
            clean.append(part)
    return tuple(clean)


def _is_branch_tag(part: Any) -> bool:
    """Pydantic's labels for union branches, e.g. 'str' or 'function-after[..., DestinationConfig]'."""
    return isinstance(part, str) and (part == "str" or "[" in part or part[:1].isupper())


def _raw_at(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def _readable_path(clean: tuple[Any, ...], raw: Any) -> str:
    text = key_path(clean)
    if len(clean) >= 2 and clean[0] == "exports" and isinstance(clean[1], int):
        entry = _raw_at(raw, clean[:2])
        name = entry.get("name") if isinstance(entry, dict) else None
        if name:
            text = text.replace(f"exports[{clean[1]}]", f"exports[{clean[1]}] ({name})", 1)
    return text


def format_errors(error: ValidationError, raw: Any) -> str:
    """One line per problem: the key path, then what is wrong and how to fix it."""
    lines: list[str] = []
    for err in error.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        clean = _without_tags(loc, raw)
        if len(clean) != len(loc):
            # A ``str | Model`` union reports both branches; keep the one that fits the input.
            value = _raw_at(raw, clean if kind != "extra_forbidden" else clean[:-1])
            if "str" in loc and isinstance(value, dict):
                continue
            if kind == "model_type" and not isinstance(value, dict | str):
                kind, err = "value_error", {**err, "msg": "expected a path or URL string, or a mapping of keys"}
            elif "str" in loc:
                continue
        path = _readable_path(clean, raw)
        if kind == "extra_forbidden":
            key = str(clean[-1])
            model = _model_at(clean, raw)
            known = list(model.model_fields) if model else []
            msg = f"{path}: unknown key '{key}'{_did_you_mean(key, known)}"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tag = key_path((*clean, err["ctx"]["discriminator"].strip("'")))
            expected = err["ctx"].get("expected_tags", "").split(", ")
            msg = (
                f"{tag}: unknown value {err['ctx']['tag']!r}; expected {', '.join(expected[:-1])} or {expected[-1]}"
                if kind == "union_tag_invalid"
                else f"{tag}: missing required key"
            )
        elif kind == "missing":
            msg = f"{path}: missing required key"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"{path}: unknown value {err.get('input')!r}; expected {expected}"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{path}: {text}" if clean else text
        if "  - " + msg not in lines:
            lines.append("  - " + msg)
    return "\n".join(lines)

"""The schedule file's reference, generated from its pydantic models (``docs/configuration.md``).

Every key with its type, default and description, section by section, in the order of the
models. ``share-scheduler config reference`` prints it; a test keeps the committed page equal
to what this module generates, so a key cannot be added without its documentation.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from datetime import time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from scheduler import config

__all__ = ["render_reference"]

HEADER = """# Configuration reference

Every key of the schedule file (YAML), generated from `scheduler/config.py` by
`share-scheduler config reference > docs/configuration.md`: do not edit by hand (a test keeps
this page in sync with the code). An annotated example: `deploy/schedule.example.yaml`.
Validate a file with `share-scheduler config check FILE`.

Durations are written `500ms`, `30s`, `5m`, `12h`, `7d`, `1w` or combined (`1h30m`); a bare
number is seconds. Secrets never live in the file: it names the environment variables (or
files) that hold them.
"""

_VALIDATOR_TYPES = {
    config.parse_duration: "duration",
    config._check_e164: "E.164 phone number (quoted)",
    config._check_zone: "IANA time zone",
    config._check_env_name: "environment variable name",
}


def _duration(value: timedelta) -> str:
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if total_ms % ms == 0:
            return f"{total_ms // ms}{unit}"
    return f"{total_ms // 1000}s" if total_ms % 1000 == 0 else f"{total_ms}ms"


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


_BOUNDS = (
    ("ge", ">= {}"),
    ("gt", "> {}"),
    ("le", "<= {}"),
    ("lt", "< {}"),
    ("min_length", "at least {} characters"),
    ("max_length", "at most {} characters"),
)


def _bounds(metadata: list[Any]) -> str:
    # pydantic keeps Field(ge=..., max_length=...) as one small constraint object each.
    parts = []
    for item in metadata:
        for name, text in _BOUNDS:
            value = getattr(item, name, None)
            if value is not None:
                parts.append(text.format(value))
    return ", ".join(parts)


_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    timedelta: "duration",
    time: "time (HH:MM)",
    Path: "path",
}


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _validated_type(metadata: Iterable[Any]) -> str | None:
    """The name a validator of ours gives its type (``Duration``, ``PhoneNumber``...)."""
    for extra in metadata:
        func = getattr(extra, "func", None)
        if func in _VALIDATOR_TYPES:
            return _VALIDATOR_TYPES[func]
    return None


def _type(annotation: Any) -> str:
    """A reader's name for a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _validated_type(args[1:]) or _type(args[0])
    if origin in (typing.Union, types.UnionType):
        named = [_type(a) for a in args if a is not type(None)]
        suffix = " or null" if type(None) in args else ""
        return " or ".join(named) + suffix
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        inner = args[0]
        return "list of sections (below)" if _is_model(inner) else f"list of {_type(inner)}"
    if _is_model(annotation):
        return "section"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
        for kind, name in _TYPE_NAMES.items():
            if issubclass(annotation, kind):
                return name
    return str(annotation)


def _field_type(field: FieldInfo) -> str:
    # pydantic moves an Annotated type's validators into the field's metadata.
    return _validated_type(field.metadata) or _type(field.annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{_value(value)}`"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The nested model a field holds (itself, in a list, or optional), if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is list:
            candidate = typing.get_args(candidate)[0]
        if _is_model(candidate):
            return typing.cast(type[BaseModel], candidate)
    return None


def _sections(
    model: type[BaseModel], prefix: str, doc: str | None
) -> Iterator[tuple[str, str | None, list[tuple[str, FieldInfo]]]]:
    """(section path, its description, its plain keys), then its nested sections."""
    plain: list[tuple[str, FieldInfo]] = []
    nested: list[tuple[str, FieldInfo, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        path = f"{prefix}{name}"
        if inner is None:
            plain.append((path, field))
        else:
            many = typing.get_origin(field.annotation) is list
            nested.append((f"{path}[]" if many else path, field, inner))
    yield prefix.rstrip("."), doc, plain
    for path, field, inner in nested:
        yield from _sections(inner, f"{path}.", field.description)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_reference() -> str:
    """The Markdown page documenting every key of the schedule file."""
    out = [HEADER]
    for path, doc, keys in _sections(config.Schedule, "", None):
        if not keys:
            continue
        out.append(f"\n## `{path}`\n" if path else "\n## Top level\n")
        if doc:
            out.append(f"\n{doc}\n")
        out.append("\n| key | type | default | description |\n|---|---|---|---|\n")
        for key, field in keys:
            kind = _field_type(field)
            bounds = _bounds(field.metadata)
            if bounds:
                kind += f" ({bounds})"
            out.append(
                f"| `{key}` | {_cell(kind)} | {_cell(_default(field))} | "
                f"{_cell(field.description or '')} |\n"
            )
    return "".join(out)

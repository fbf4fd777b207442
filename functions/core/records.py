"""Frozen dataclass records read from plain JSON values with explicit type checks (no pydantic on the cold path).

``parse_record(cls, value)`` checks every field of the dataclass ``cls`` against its annotation, refuses
unknown keys (unless the class sets ``IGNORE_UNKNOWN = True``) and missing required ones, and raises
RecordError naming the offending field (``variants[1].sha256: expected a string, got int``). Semantic checks
live in each record's ``__post_init__``, which raises ValueError; those are reported with the field path too.
Supported annotations: str, int, float, bool, None, Literal, list[T], tuple[T, ...], tuple[A, B], dict[str, T],
unions of those, other records, and unions of records told apart by their ``kind`` Literal field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import orjson

R = TypeVar("R")


class RecordError(ValueError):
    """A JSON value that does not fit a record; ``field`` is the dotted path of the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field or 'document'}: {problem}")
        self.field = field
        self.problem = problem


def parse_json(cls: type[R], data: bytes | str) -> R:
    """A record from JSON text; invalid JSON is a RecordError too."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RecordError("", f"not valid JSON ({exc})") from None
    return parse_record(cls, value)


def parse_record(cls: type[R], value: object, path: str = "") -> R:
    """A record of type ``cls`` from a plain dict, every field checked."""
    if not isinstance(value, dict):
        raise RecordError(path, f"expected an object, got {_kind(value)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(value) - set(fields))
    if unknown and not getattr(cls, "IGNORE_UNKNOWN", False):
        raise RecordError(_join(path, str(unknown[0])), "unknown field")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in value:
            values[name] = _parse(hints[name], value[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RecordError(_join(path, name), "required field missing")
    try:
        return cls(**values)
    except RecordError as exc:
        raise RecordError(_join(path, exc.field), exc.problem) from None
    except ValueError as exc:
        raise RecordError(path, str(exc)) from None


def to_plain(record: object) -> dict[str, Any]:
    """A record as plain JSON-ready values (tuples become lists when serialized)."""
    return dataclasses.asdict(record)  # type: ignore[call-overload, no-any-return]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: Any) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _parse(hint: Any, value: object, path: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if hint is type(None):
        if value is not None:
            raise RecordError(path, f"expected null, got {_kind(value)}")
        return None
    if hint is str or hint is bool:
        if not isinstance(value, hint):
            raise RecordError(path, f"expected {_NAMES[hint]}, got {_kind(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecordError(path, f"expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RecordError(path, f"expected a number, got {_kind(value)}")
        return float(value)
    if dataclasses.is_dataclass(hint):
        return parse_record(hint, value, path)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in get_args(hint) or isinstance(value, bool) != any(isinstance(a, bool) for a in get_args(hint)):
            raise RecordError(path, f"expected one of {', '.join(map(repr, get_args(hint)))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        return _parse_union(get_args(hint), value, path)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(path, f"expected an array, got {_kind(value)}")
        (item,) = get_args(hint)
        return [_parse(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list):
            raise RecordError(path, f"expected an array, got {_kind(value)}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecordError(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(_parse(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(path, f"expected an object, got {_kind(value)}")
        key_hint, item = get_args(hint)
        return {_parse(key_hint, k, f"{path}.{k}"): _parse(item, v, f"{path}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported annotation {hint!r} at {path}")  # a programming error, not bad data


def _parse_union(options: tuple[Any, ...], value: object, path: str) -> Any:
    records = [o for o in options if dataclasses.is_dataclass(o)]
    if records and len(records) == len(options):  # tagged by `kind`
        if not isinstance(value, dict):
            raise RecordError(path, f"expected an object, got {_kind(value)}")
        kinds: dict[str, Any] = {get_args(_hints(o)["kind"])[0]: o for o in records}
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            raise RecordError(_join(path, "kind"), f"expected one of {', '.join(map(repr, kinds))}, got {kind!r}")
        return parse_record(kinds[kind], value, path)
    if value is None and type(None) in options:
        return None
    problems = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _parse(option, value, path)
        except RecordError as exc:
            problems.append(exc.problem)
    raise RecordError(path, " or ".join(dict.fromkeys(problems)))


_NAMES = {str: "a string", bool: "a boolean"}


def _kind(value: object) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _join(path: str, name: str) -> str:
    if not name:
        return path
    if name.startswith("["):
        return f"{path}{name}"
    return f"{path}.{name}" if path else name


def marked_lines(lines: Iterable[bytes], marker: bytes, on_bad: Callable[[], None] | None = None) -> Iterator[Any]:
    """The JSON values of the lines that contain ``marker`` (capture and comparison records share log streams
    and folders with other lines); a marked line that is not JSON is skipped and reported to ``on_bad``."""
    for line in lines:
        if marker not in line:
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            if on_bad is not None:
                on_bad()

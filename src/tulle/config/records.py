"""Checked configuration objects without their checker: what a proxy process reads.

The manifests are checked by pydantic models (``schema_*``), in a process of their own
(`tulle.config.checker`). A proxy process then reads the same objects as *records*:
plain, frozen objects with the same attribute names, the same methods (the mixins of
`tulle.config.methods`) and the JSON form the model had. So the proxy never imports
pydantic, whose models and validators are about half of an idle proxy's memory.

Code that reads the configuration cannot tell the two forms apart, except through
the functions here, which accept both: `dump` (the JSON form) and `with_changes` (a
copy with some fields changed).

This module imports nothing from pydantic; `as_records` recognises a model by its
``model_fields``.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import fields, is_dataclass
from dataclasses import replace as replace_dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class RecordMethods:
    """Base of a mixin whose methods a schema model and its record both have."""

    __slots__ = ()


class Record:
    """A checked schema object: its fields as attributes, frozen.

    ``_json`` and ``_sparse`` are the model's JSON form (``model_dump(by_alias=True,
    mode="json")``), with and without fields that are None.
    """

    __slots__ = ("__dict__", "_json", "_sparse")
    _fields: ClassVar[tuple[str, ...]] = ()
    _aliases: ClassVar[dict[str, str]] = {}  # field name -> its name in the JSON form

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __hash__(self) -> int:
        return hash((type(self).__name__, *(getattr(self, name) for name in self._fields)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        kind = type(self)
        return (_rebuild, (kind.__name__, kind.__bases__[:-1], kind._fields, kind._aliases,
                           dict(self.__dict__), self._json, self._sparse))


_TYPES: dict[tuple[str, tuple[type, ...], tuple[str, ...]], type[Record]] = {}


def record_type(name: str, mixins: tuple[type, ...], field_names: tuple[str, ...],
                aliases: Mapping[str, str]) -> type[Record]:
    """The record class named ``name`` with these mixins and fields (made once)."""
    key = (name, mixins, field_names)
    kind = _TYPES.get(key)
    if kind is None:
        kind = type(name, (*mixins, Record), {
            "__slots__": (), "_fields": field_names, "_aliases": dict(aliases),
        })
        _TYPES[key] = kind
    return kind


def _rebuild(name: str, mixins: tuple[type, ...], field_names: tuple[str, ...],
             aliases: Mapping[str, str], values: dict[str, Any], json: Any,
             sparse: Any) -> Record:
    record = object.__new__(record_type(name, mixins, field_names, aliases))
    record.__dict__.update(values)
    object.__setattr__(record, "_json", json)
    object.__setattr__(record, "_sparse", sparse)
    return record


def as_records(value: T) -> T:
    """``value`` with every pydantic model in it (nested in tuples, lists, dicts and
    dataclasses too) turned into its record. A model met twice (the mesh defaults many
    services share) becomes one record."""
    return _Converter().convert(value)  # type: ignore[no-any-return]


class _Converter:
    def __init__(self) -> None:
        self._done: dict[int, Record] = {}  # id(model) -> its record

    def convert(self, value: Any) -> Any:
        kind = type(value)
        model_fields = getattr(kind, "model_fields", None)
        if model_fields is not None and not isinstance(value, type):
            record = self._done.get(id(value))
            if record is None:
                record = self._done[id(value)] = self._record_of(value, model_fields)
            return record
        return self._convert_container(value)

    def _convert_container(self, value: Any) -> Any:
        kind = type(value)
        convert = self.convert
        if kind is tuple or kind is list:
            items = [convert(item) for item in value]
            return value if all(new is old for new, old in zip(items, value, strict=True)) \
                else kind(items)
        if kind is dict or kind is MappingProxyType:
            converted = {key: convert(item) for key, item in value.items()}
            if all(converted[key] is item for key, item in value.items()):
                return value
            return converted if kind is dict else MappingProxyType(converted)
        if is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for item in fields(value):
                old = getattr(value, item.name)
                new = convert(old)
                if new is not old:
                    changes[item.name] = new
            return replace_dataclass(value, **changes) if changes else value
        return value

    def _record_of(self, model: Any, model_fields: Mapping[str, Any]) -> Record:
        kind = type(model)
        mixins = tuple(base for base in kind.__mro__ if issubclass(base, RecordMethods)
                       and base is not RecordMethods and not hasattr(base, "model_fields"))
        aliases = {name: info.alias or name for name, info in model_fields.items()}
        values = {name: self.convert(getattr(model, name)) for name in model_fields}
        values |= {name: self.convert(item)
                   for name, item in (getattr(model, "__pydantic_private__", None) or {}).items()}
        return _rebuild(kind.__name__, mixins, tuple(model_fields), aliases, values,
                        model.model_dump(by_alias=True, mode="json"),
                        model.model_dump(by_alias=True, mode="json", exclude_none=True))


def dump(value: Any, *, exclude_none: bool = False) -> Any:
    """The JSON form of a model or record (camelCase, durations as "10s"); a fresh copy."""
    if isinstance(value, Record):
        return deepcopy(value._sparse if exclude_none else value._json)
    return value.model_dump(by_alias=True, mode="json", exclude_none=exclude_none)


def with_changes(value: T, **changes: Any) -> T:
    """A copy of a model or record with some fields changed.

    A record's JSON form follows: a changed field is rendered by its own form (a record
    by its JSON, a string, a number, None; anything else as ``str``), which is right for
    the values this is used with: addresses, zones, nested records.
    """
    if not isinstance(value, Record):
        return value.model_copy(update=changes)  # type: ignore[attr-defined, no-any-return]
    kind = type(value)
    unknown = set(changes) - set(kind._fields)
    if unknown:
        raise TypeError(f"{kind.__name__} has no field {', '.join(sorted(unknown))}")
    json, sparse = deepcopy(value._json), deepcopy(value._sparse)
    for name, item in changes.items():
        alias = kind._aliases[name]
        json[alias] = _render(item, exclude_none=False)
        sparse.pop(alias, None)
        if item is not None:
            sparse[alias] = _render(item, exclude_none=True)
    return _rebuild(kind.__name__, kind.__bases__[:-1], kind._fields,  # type: ignore[return-value]
                    kind._aliases, value.__dict__ | changes, json, sparse)


def _render(value: Any, *, exclude_none: bool) -> Any:
    if isinstance(value, Record):
        return dump(value, exclude_none=exclude_none)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


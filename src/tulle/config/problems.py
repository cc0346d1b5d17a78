"""What went wrong in a configuration, said so a person can fix it without guessing.

Every :class:`Problem` names the file, the document (its 1-based position in the file,
its kind and name), the field path and what was expected. Loading collects every
problem in every file before raising one :class:`ConfigError`, so a user fixes a
whole configuration in one pass instead of one error per run.

pydantic's own messages ("Input should be a valid integer") are rewritten here into
the "expected X, got Y" form, with camelCase field paths as the user wrote them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

# pydantic is imported only where its errors are translated: a proxy process reads
# ConfigError and Problem too, and never loads pydantic (tulle.config.records).

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration; ``str(problem)`` is one line."""

    file: Path | str
    document: int | None = None
    kind: str | None = None
    name: str | None = None
    path: str = ""
    message: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = [str(self.file)]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.document is not None:
            label = f"document {self.document}"
            if self.kind:
                label += f" ({self.kind} \"{self.name}\")" if self.name else f" ({self.kind})"
            where.append(label)
        if self.path:
            where.append(self.path)
        return ": ".join([*where, self.message])


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def describe(value: Any) -> str:
    """Show a value the user wrote, briefly: strings quoted, collections by kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str | bool | int | float) or value is None:
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + '..."'
    return type(value).__name__


def format_path(location: Iterable[str | int]) -> str:
    """``("spec", "endpoints", 1, "address")`` -> ``spec.endpoints[1].address``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


# pydantic error type -> what the field expected, for the common shapes of mistake.
_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
}
_BOUNDS: dict[str, str] = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}


def _message(error: dict[str, Any], model: type[BaseModel]) -> str:
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    got = describe(value)
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        accepted = _accepted_fields(model, error["loc"][:-1])
        hint = f" (expected one of: {', '.join(accepted)})" if accepted else ""
        return f"unknown field{hint}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind in _BOUNDS:
        return f"expected a number {_BOUNDS[kind].format(**context)}, got {got}"
    if kind == "literal_error":
        return f"expected one of {context.get('expected', '')}, got {got}".replace("'", "")
    if kind in ("too_short", "too_long"):
        limit = "at least" if kind == "too_short" else "at most"
        count = context.get("min_length" if kind == "too_short" else "max_length")
        return f"expected {limit} {count} item{'s' if count != 1 else ''}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _accepted_fields(model: type[BaseModel], location: Sequence[str | int]) -> list[str]:
    """The field names (as written in YAML) accepted at ``location`` inside ``model``."""
    from pydantic import BaseModel

    current: Any = model
    for part in location:
        current = _step(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step(annotation: Any, part: str | int) -> Any:
    from pydantic import BaseModel

    for candidate in _unwrap(annotation):
        if isinstance(part, int):
            args = getattr(candidate, "__args__", ())
            if args:
                return args[0]
        elif isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
    return None


def _unwrap(annotation: Any) -> list[Any]:
    """Strip ``Optional``/``Annotated``/unions down to the candidate types."""
    origin_args = getattr(annotation, "__args__", None)
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:
        return _unwrap(annotation.__origin__)
    if origin_args and type(annotation).__name__ in ("UnionType", "_UnionGenericAlias"):
        return [found for arg in origin_args for found in _unwrap(arg)]
    return [annotation]


def problems_from_validation(
    error: ValidationError,
    model: type[BaseModel],
    *,
    file: Path | str,
    document: int,
    kind: str | None,
    name: str | None,
) -> list[Problem]:
    """Turn one pydantic ValidationError into Problems naming file, document and field."""
    return [
        Problem(
            file=file,
            document=document,
            kind=kind,
            name=name,
            path=format_path(part for part in item["loc"] if not _is_union_tag(part)),
            message=_message(item, model),
        )
        for item in error.errors(include_url=False)
    ]


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the branch of a union into the location ("function-after[...]"),
    # which means nothing to the person who wrote the YAML.
    return isinstance(part, str) and ("[" in part and part.endswith("]"))

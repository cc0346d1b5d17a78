"""Finding manifest files and reading their YAML documents.

Two YAML 1.1 habits would quietly corrupt manifests, so the loader turns them off:
``on``/``off``/``yes``/``no`` becoming booleans (``retries: {on: [...]}`` must keep
its key) and ``1:30`` becoming the integer 90. Only ``true``/``false`` are booleans,
as in YAML 1.2 and JSON. A key written twice in one mapping is an error, not
last-one-wins. Parsing uses libyaml (``CSafeLoader``) for speed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tulle.config.problems import Problem

MANIFEST_SUFFIXES = (".yaml", ".yml")


class ManifestLoader(yaml.CSafeLoader):
    """libyaml's safe loader with YAML 1.2 booleans and integers and no duplicate keys."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+)$"),
    list("-+0123456789"),
)


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: where it came from and what it holds."""

    file: Path
    index: int  # 1-based position in its file, counting empty documents
    content: Any


def find_manifests(path: Path) -> tuple[list[Path], list[Problem]]:
    """The manifest files at ``path``: the file itself, or a folder's ``*.yaml``/``*.yml``
    files found recursively in sorted order (hidden files and folders skipped)."""
    if path.is_file():
        return [path], []
    if not path.exists():
        return [], [Problem(file=path, message="no such file or directory")]
    files = sorted(
        found for found in path.rglob("*")
        if found.suffix in MANIFEST_SUFFIXES and found.is_file()
        and not any(part.startswith(".") for part in found.relative_to(path).parts)
    )
    if not files:
        return [], [Problem(file=path, message="no *.yaml or *.yml files in this folder")]
    return files, []


def read_documents(file: Path) -> tuple[list[Document], list[Problem]]:
    """Every document in ``file``; on a YAML syntax error, the documents before it and
    a problem naming the line."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], [Problem(file=file, message=f"cannot read file: {error}")]
    documents: list[Document] = []
    stream: Iterator[Any] = yaml.load_all(text, Loader=ManifestLoader)
    try:
        for index, content in enumerate(stream, start=1):
            documents.append(Document(file, index, content))
    except yaml.YAMLError as error:
        return documents, [_syntax_problem(file, error)]
    return documents, []


def _syntax_problem(file: Path, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or str(error)
    if mark is None:
        return Problem(file=file, message=f"invalid YAML: {what}")
    what += f" (column {mark.column + 1})"
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        where = ""
        if context_mark is not None and context_mark.line != mark.line:
            where = f" that starts on line {context_mark.line + 1}"
        what += f", {context}{where}"
    return Problem(file=file, line=mark.line + 1, message=f"invalid YAML: {what}")

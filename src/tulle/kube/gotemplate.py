"""The part of Go's text/template (with Helm's functions) that Tulle's chart uses.

``tulle install`` must print exactly what ``helm template`` renders from
deploy/helm/tulle, without helm: the chart stays the one source of truth, and this
module renders it. It is a small, strict interpreter, not a general one: actions
``{{ }}`` with ``-`` trim markers and comments; ``if``/``else``/``with``/``define``/
``end``; ``include``; ``lookup`` (which, as in ``helm template``, finds nothing);
variables (``$x := …``, ``$x = …``, ``$``); pipelines of fields,
variables, string and number literals, parenthesised pipelines and the functions in
``FUNCTIONS``. Anything else is a ``TemplateError`` naming the template and line, so
a chart edit that needs more fails a test (tests/k8s compares this output with
``helm template``) instead of rendering something different. Functions that helm can
run but this module must not (``genCA``: random keys) are refused when executed.

Semantics follow text/template: a pipeline's value is passed as the last argument
of the next command; ``if``/``with`` test Go's truth (false, 0, nil, empty string,
list or map are false); ``with`` rebinds ``.``; a missing field is nil and prints
nothing (helm replaces ``<no value>`` with the empty string).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<op>:=|=|\||\(|\))'
                    r"|(?P<word>[$.]?[A-Za-z0-9_$.]*))")


class TemplateError(Exception):
    """The template uses something this renderer does not do, or is malformed."""


# -- parsing --------------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipeline: list[Any]
    declare: str | None = None  # "$x"
    assign: bool = False  # "=" rather than ":="
    line: int = 0


@dataclass
class _Block:
    keyword: str  # "if", "with", "define"
    pipeline: list[Any]
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)
    line: int = 0
    name: str = ""


def _tokens(source: str, where: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            if source[position:].strip() == "":
                break
            raise TemplateError(f"{where}: cannot read {source[position:]!r}")
        position = match.end()
        kind = match.lastgroup
        if kind is not None and match.group(kind):
            tokens.append((kind, match.group(kind)))
    return tokens


def _pipeline(tokens: list[tuple[str, str]], where: str) -> list[Any]:
    """Commands (lists of operands) separated by ``|``; ``(`` ``)`` nest pipelines."""
    commands: list[list[Any]] = [[]]
    stack: list[list[list[Any]]] = []
    for kind, value in tokens:
        if value == "|":
            commands.append([])
        elif value == "(":
            stack.append(commands)
            commands = [[]]
        elif value == ")":
            if not stack:
                raise TemplateError(f"{where}: unbalanced ')'")
            inner, commands = commands, stack.pop()
            commands[-1].append(("pipe", inner))
        elif kind == "str":
            commands[-1].append(("lit", _unquote(value)))
        elif kind == "num":
            commands[-1].append(("lit", int(value)))
        else:
            commands[-1].append(("word", value))
    if stack or any(not command for command in commands):
        raise TemplateError(f"{where}: malformed pipeline")
    return commands


def _unquote(text: str) -> str:
    return bytes(text[1:-1], "utf-8").decode("unicode_escape")


def parse(source: str, name: str) -> tuple[list[Any], dict[str, list[Any]]]:
    """The template's nodes and the ``define``d templates it holds."""
    root: list[Any] = []
    stack: list[tuple[_Block, list[Any]]] = []
    current = root
    defines: dict[str, list[Any]] = {}
    position = 0
    for match in _ACTION.finditer(source):
        text = source[position:match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            current.append(_Text(text))
        position = match.end()
        if match.group(3):
            rest = source[position:]
            position += len(rest) - len(rest.lstrip(" \t\r\n"))
        line = source.count("\n", 0, match.start()) + 1
        where = f"{name}:{line}"
        body = match.group(2).strip()
        if body.startswith("/*"):
            continue
        tokens = _tokens(body, where)
        if not tokens:
            raise TemplateError(f"{where}: empty action")
        keyword = tokens[0][1]
        if keyword in ("if", "with"):
            block = _Block(keyword, _pipeline(tokens[1:], where), line=line)
            current.append(block)
            stack.append((block, current))
            current = block.body
        elif keyword == "define":
            if len(tokens) != 2 or tokens[1][0] != "str":
                raise TemplateError(f"{where}: expected define \"name\"")
            block = _Block("define", [], line=line, name=_unquote(tokens[1][1]))
            stack.append((block, current))
            current = block.body
        elif keyword == "else":
            if not stack or stack[-1][0].keyword == "define" or len(tokens) != 1:
                raise TemplateError(f"{where}: unexpected else")
            current = stack[-1][0].orelse
        elif keyword == "end":
            if not stack:
                raise TemplateError(f"{where}: unexpected end")
            block, current = stack.pop()
            if block.keyword == "define":
                defines[block.name] = block.body
        elif keyword in ("range", "template", "block", "break", "continue"):
            raise TemplateError(f"{where}: {keyword} is not supported by tulle install")
        elif len(tokens) > 2 and tokens[0][1].startswith("$") and tokens[1][1] in (":=", "="):
            current.append(_Action(_pipeline(tokens[2:], where), tokens[0][1],
                                   tokens[1][1] == "=", line))
        else:
            current.append(_Action(_pipeline(tokens, where), line=line))
    if stack:
        raise TemplateError(f"{name}: {stack[-1][0].keyword} at line {stack[-1][0].line} "
                            "has no end")
    tail = source[position:]
    if tail:
        root.append(_Text(tail))
    return root, defines


# -- values and functions -------------------------------------------------------------


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    return bool(value) if not isinstance(value, bool) else value


class _GoDumper(yaml.SafeDumper):
    """YAML as helm's ``toYaml`` writes it (sigs.k8s.io/yaml): keys sorted, strings
    that need quotes in double quotes, block style, lists not indented."""

    def choose_scalar_style(self) -> str | None:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    text = yaml.dump(value, Dumper=_GoDumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=1 << 30)
    return text.removesuffix("\n").removesuffix("\n...")


def _indent(spaces: int, text: str) -> str:
    pad = " " * spaces
    return pad + text.replace("\n", "\n" + pad)


def _default(fallback: Any, value: Any = None) -> Any:
    return value if truth(value) else fallback


def _quote(*values: Any) -> str:
    return " ".join('"' + str(_text(value)).replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for value in values if value is not None)


def _printf(pattern: str, *args: Any) -> str:
    """``printf`` with the verbs the chart uses: %s, %d and %v."""
    remaining = list(args)
    return re.sub(r"%[sdv]", lambda _: _text(remaining.pop(0)) if remaining else "%!v(MISSING)",
                  pattern)


def _refused(name: str) -> Callable[..., Any]:
    def refuse(*args: Any) -> Any:
        raise TemplateError(f"{name} makes random output, which tulle install cannot repeat; "
                            "give the values it would make (tulle install does)")
    return refuse


def _and(*values: Any) -> Any:
    """Go's ``and``: the first false argument, else the last."""
    for value in values:
        if not truth(value):
            return value
    return values[-1] if values else None


def _index(collection: Any, *keys: Any) -> Any:
    for key in keys:
        collection = collection.get(key) if isinstance(collection, dict) else None
    return collection


def _lookup(*args: Any) -> dict[str, Any]:
    """Nothing, as ``helm template`` finds: rendering reads no cluster."""
    return {}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "default": _default,
    "quote": _quote,
    "toYaml": to_yaml,
    "nindent": lambda spaces, text: "\n" + _indent(spaces, text),
    "indent": _indent,
    "b64enc": lambda text: base64.b64encode(str(text).encode()).decode(),
    "b64dec": lambda text: base64.b64decode(str(text)).decode(),
    "and": _and,
    "index": _index,
    "lookup": _lookup,
    "printf": _printf,
    "not": lambda value: not truth(value),
    "list": lambda *items: list(items),
    "genCA": _refused("genCA"),
    "genSignedCert": _refused("genSignedCert"),
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_text(item) for item in value) + "]"
    return str(value)


# -- execution ------------------------------------------------------------------------


class Renderer:
    """Renders templates that share ``define``s (a chart's ``_helpers.tpl`` and files)."""

    def __init__(self) -> None:
        self.defines: dict[str, list[Any]] = {}

    def add(self, source: str, name: str) -> list[Any]:
        nodes, defines = parse(source, name)
        self.defines.update(defines)
        return nodes

    def render(self, nodes: list[Any], root: Any, name: str) -> str:
        out: list[str] = []
        self._run(nodes, root, {"$": root}, out, name)
        return "".join(out)

    def _run(self, nodes: list[Any], dot: Any, variables: dict[str, Any], out: list[str],
             name: str) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipeline, dot, variables, f"{name}:{node.line}")
                if node.declare is None:
                    out.append(_text(value))
                elif node.assign and node.declare not in variables:
                    raise TemplateError(f"{name}:{node.line}: undefined variable {node.declare}")
                else:
                    variables[node.declare] = value
            elif isinstance(node, _Block):
                value = self._pipe(node.pipeline, dot, variables, f"{name}:{node.line}")
                chosen = node.body if truth(value) else node.orelse
                inner_dot = value if node.keyword == "with" and truth(value) else dot
                self._run(chosen, inner_dot, variables, out, name)

    def _pipe(self, commands: list[list[Any]], dot: Any, variables: dict[str, Any],
              where: str) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, dot, variables, where, value)
        return value

    def _command(self, command: list[Any], dot: Any, variables: dict[str, Any], where: str,
                 piped: Any) -> Any:
        head_kind, head = command[0]
        if head_kind == "word" and (head == "include" or head in FUNCTIONS):
            args = [self._operand(item, dot, variables, where) for item in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            if head == "include":
                if len(args) != 2 or args[0] not in self.defines:
                    raise TemplateError(f"{where}: include of an unknown template {args[:1]}")
                return self._include(args[0], args[1], where)
            try:
                return FUNCTIONS[head](*args)
            except TypeError as exc:
                raise TemplateError(f"{where}: {head}: {exc}") from None
        if len(command) != 1 or piped is not _NOTHING:
            raise TemplateError(f"{where}: {head!r} is not a function tulle install knows")
        return self._operand(command[0], dot, variables, where)

    def _include(self, name: str, dot: Any, where: str) -> str:
        out: list[str] = []
        self._run(self.defines[name], dot, {"$": dot}, out, where)
        return "".join(out)

    def _operand(self, item: tuple[str, Any], dot: Any, variables: dict[str, Any],
                 where: str) -> Any:
        kind, value = item
        if kind == "lit":
            return value
        if kind == "pipe":
            return self._pipe(value, dot, variables, where)
        if value == "nil":
            return None
        if value in ("true", "false"):
            return value == "true"
        if value.startswith("$"):
            name, _, path = value.partition(".")
            if name not in variables:
                raise TemplateError(f"{where}: undefined variable {name}")
            return _field(variables[name], path)
        if value.startswith("."):
            return _field(dot, value[1:])
        raise TemplateError(f"{where}: {value!r} is not a function tulle install knows")


_NOTHING = object()


def _field(value: Any, path: str) -> Any:
    for name in filter(None, path.split(".")):
        value = value.get(name) if isinstance(value, dict) else None
    return value

"""Gateway API HTTPRoutes attached to a service: match a request, split it across backends.

Mesh routing as GAMMA defines it: an HTTPRoute whose ``parentRef`` is a Service
applies to requests addressed to that service. Its rules' matches (path exact,
prefix or regular expression; method; headers) are tried in the Gateway API's
order of precedence — exact path, then the longest prefix, then regular
expressions; then a match with a method before one without; then more header
matches first; then file order — and the first that matches wins. Its weighted
``backendRefs`` choose the service that serves the request, per request
(weighted random, as Envoy's weighted clusters do). A request that matches no
rule gets 404, as the Gateway API specifies; a rule without backends, 500.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from tulle.config.schema_gateway import RouteMatch
    from tulle.http import RequestHead
    from tulle.proxy.targets import ServiceTarget
    from tulle.resilience import RetryPolicy
    from tulle.telemetry.metrics import ResponseStats

_random = random.Random()
# What a route table leads to: a rule's backends (mesh routing), or a policy route.
Rule = TypeVar("Rule")


@dataclass(slots=True)
class RouteRuleTarget:
    """One rule's destination: its name for metrics, its weighted backends, and the
    rule's own timeouts and retry policy (None: the backend service's apply)."""

    name: str
    backends: tuple[ServiceTarget, ...]
    cumulative: tuple[int, ...]  # running sum of the weights, for bisect
    stats: ResponseStats
    request_timeout: float | None = None
    per_try_timeout: float | None = None
    retry_policy: RetryPolicy | None = None

    def pick(self) -> ServiceTarget | None:
        total = self.cumulative[-1] if self.cumulative else 0
        if total == 0:
            return None
        return self.backends[bisect_right(self.cumulative, _random.randrange(total))]


def _precedence(match: RouteMatch, order: int) -> tuple[int, int, int, int, int]:
    path_rank = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}[match.path.type]
    return (path_rank, -len(match.path.value), 0 if match.method else 1, -len(match.headers),
            order)


def _matches(match: RouteMatch, head: RequestHead, path: str) -> bool:
    path_match = match.path
    if path_match.type == "Exact":
        if path != path_match.value:
            return False
    elif path_match.type == "PathPrefix":
        prefix = path_match.value.rstrip("/")
        # Gateway API prefixes match whole path segments: /api matches /api/x, not /apix.
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return False
    else:
        assert path_match.pattern is not None
        if not path_match.pattern.fullmatch(path):
            return False
    if match.method is not None and head.method.decode("latin-1") != match.method:
        return False
    for header in match.headers:
        value = head.header(header.name.lower().encode("latin-1"))
        if value is None:
            return False
        text = value.decode("latin-1")
        if header.pattern is not None:
            if not header.pattern.fullmatch(text):
                return False
        elif text != header.value:
            return False
    return True


class RouteTable(Generic[Rule]):
    """The routes attached to one service (or, for inbound policy, one Server), compiled
    for matching."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Sequence[tuple[RouteMatch, int, Rule]]) -> None:
        ordered = sorted(entries, key=lambda entry: _precedence(entry[0], entry[1]))
        self._entries = [(match, rule) for match, _, rule in ordered]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def match(self, head: RequestHead) -> Rule | None:
        path = head.target.split(b"?", 1)[0].decode("latin-1")
        for match, rule in self._entries:
            if _matches(match, head, path):
                return rule
        return None

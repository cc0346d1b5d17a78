"""HTTPRoute matching without sockets: Gateway API precedence, prefixes by segment,
methods, headers, and weighted picks."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import tulle.proxy.http_routes as http_routes
from tulle.config.schema_gateway import RouteMatch
from tulle.http import RequestHead
from tulle.proxy.http_routes import RouteRuleTarget, RouteTable
from tulle.telemetry.metrics import ResponseStats


def head(path: str, method: str = "GET", **headers: str) -> RequestHead:
    request = RequestHead()
    request.method = method.encode()
    request.target = path.encode()
    request.headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return request


def rule(name: str, backends: tuple[object, ...] = ("b",), weights: tuple[int, ...] = (1,),
         ) -> RouteRuleTarget:
    cumulative, total = [], 0
    for weight in weights:
        total += weight
        cumulative.append(total)
    return RouteRuleTarget(name, backends, tuple(cumulative),  # type: ignore[arg-type]
                           ResponseStats(("outbound", "web", "default", name)))


def match(**spec: object) -> RouteMatch:
    return RouteMatch.model_validate(spec)


def table(*entries: tuple[RouteMatch, RouteRuleTarget]) -> RouteTable:
    return RouteTable([(m, order, r) for order, (m, r) in enumerate(entries)])


def test_exact_beats_the_longest_prefix_which_beats_a_shorter_one_and_regexes() -> None:
    routes = table(
        (match(path={"type": "PathPrefix", "value": "/"}), rule("root")),
        (match(path={"type": "RegularExpression", "value": "/api/.*"}), rule("regex")),
        (match(path={"type": "PathPrefix", "value": "/api"}), rule("api")),
        (match(path={"type": "Exact", "value": "/api/users"}), rule("exact")),
    )
    assert routes.match(head("/api/users")).name == "exact"
    assert routes.match(head("/api/users/7")).name == "api"
    assert routes.match(head("/other")).name == "root"


def test_a_prefix_matches_whole_segments_and_ignores_the_query() -> None:
    routes = table((match(path={"type": "PathPrefix", "value": "/api"}), rule("api")))
    assert routes.match(head("/api")) is not None
    assert routes.match(head("/api/x?y=1")) is not None
    assert routes.match(head("/api?y=1")) is not None
    assert routes.match(head("/apix")) is None


def test_method_and_headers_narrow_a_match_and_win_ties() -> None:
    routes = table(
        (match(path={"type": "PathPrefix", "value": "/"}), rule("any")),
        (match(path={"type": "PathPrefix", "value": "/"}, method="POST"), rule("post")),
        (match(path={"type": "PathPrefix", "value": "/"},
               headers=[{"name": "x-beta", "value": "yes"}]), rule("beta")),
        (match(path={"type": "PathPrefix", "value": "/"},
               headers=[{"type": "RegularExpression", "name": "x-user", "value": "ad.*"}]),
         rule("admin")),
    )
    assert routes.match(head("/", "POST")).name == "post"
    assert routes.match(head("/", x_beta="yes")).name == "beta"
    assert routes.match(head("/", x_beta="no")).name == "any"
    assert routes.match(head("/", x_user="admin")).name == "admin"
    assert routes.match(head("/", x_user="bob")).name == "any"


def test_weighted_backends_split_within_binomial_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_routes, "_random", random.Random(7))
    split = rule("split", ("stable", "canary", "never"), (90, 10, 0))
    picks = Counter(split.pick() for _ in range(10_000))
    # Binomial(10000, 0.1): sd 30; 5 sd either side.
    assert abs(picks["canary"] - 1000) < 150
    assert picks["never"] == 0


def test_a_rule_with_no_backend_picks_none() -> None:
    assert rule("empty", (), ()).pick() is None

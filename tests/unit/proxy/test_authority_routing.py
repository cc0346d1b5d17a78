"""Which service an authority names: Kubernetes DNS forms, ports, case, absolute-form."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from tulle.balance import RoundRobin
from tulle.config import Limits, LoadBalancer
from tulle.http import RequestHead
from tulle.proxy.routing import Router, authority_host, take_absolute_form
from tulle.proxy.targets import ServiceTarget, TargetTimeouts
from tulle.resilience import RetryBudget
from tulle.telemetry.metrics import ResponseStats, ServiceCounters


def service(name: str, namespace: str = "default") -> ServiceTarget:
    """A real target named so (the router reads only its name and namespace)."""
    return ServiceTarget(
        name, namespace, LoadBalancer.model_validate({}), RoundRobin(),
        TargetTimeouts(request=None, connect=1.0), ResponseStats(("outbound", name, namespace, "")),
        ServiceCounters(("outbound", name, namespace)), RetryBudget(0.2, 10, 10.0, time.monotonic),
        cast(asyncio.AbstractEventLoop, None), Limits(),  # routing never waits
    )


def request(host: str | None, target: str = "/") -> RequestHead:
    head = RequestHead()
    head.target = target.encode()
    head.host = host.encode() if host is not None else None
    head.headers = [(b"Host", head.host)] if head.host is not None else []
    return head


def test_every_kubernetes_name_of_a_service_routes_to_it() -> None:
    web, other = service("web"), service("web", "shop")
    router = Router([web, other])
    for host in ("web", "WEB:80", "web.default", "web.default.svc",
                 "web.default.svc.cluster.local", "web.default.svc.cluster.local.:8080"):
        assert router.resolve(request(host)) is web, host
    assert router.resolve(request("web.shop")) is other
    assert router.resolve(request("nowhere")) is None


def test_a_bare_name_prefers_the_default_namespace() -> None:
    shop, default = service("api", "shop"), service("api")
    assert Router([shop, default]).resolve(request("api")) is default


def test_authority_host_strips_ports_and_keeps_ipv6_literals() -> None:
    assert authority_host(b"Web.Default:80") == b"web.default"
    assert authority_host(b"[::1]:4140") == b"[::1]"
    assert authority_host(b"example.com.") == b"example.com"


def test_absolute_form_becomes_origin_form_with_the_url_authority() -> None:
    head = request("ignored", "http://web:80/a/b?c=1")
    take_absolute_form(head)
    assert (head.target, head.host) == (b"/a/b?c=1", b"web:80")
    assert head.headers == [(b"host", b"web:80")]
    bare = request("x", "http://web?q")
    take_absolute_form(bare)
    assert bare.target == b"/?q"

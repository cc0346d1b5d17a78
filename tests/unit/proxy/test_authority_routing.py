"""Which service an authority names: Kubernetes DNS forms, ports, case, absolute-form."""

from __future__ import annotations

from tulle.http import RequestHead
from tulle.proxy.routing import Router, authority_host, take_absolute_form


class Target:
    def __init__(self, name: str, namespace: str = "default") -> None:
        self.name = name
        self.namespace = namespace


def request(host: str | None, target: str = "/") -> RequestHead:
    head = RequestHead()
    head.target = target.encode()
    head.host = host.encode() if host is not None else None
    head.headers = [(b"Host", head.host)] if head.host is not None else []
    return head


def test_every_kubernetes_name_of_a_service_routes_to_it() -> None:
    web, other = Target("web"), Target("web", "shop")
    router = Router([web, other])  # type: ignore[list-item]
    for host in ("web", "WEB:80", "web.default", "web.default.svc",
                 "web.default.svc.cluster.local", "web.default.svc.cluster.local.:8080"):
        assert router.resolve(request(host)) is web, host
    assert router.resolve(request("web.shop")) is other
    assert router.resolve(request("nowhere")) is None


def test_a_bare_name_prefers_the_default_namespace() -> None:
    shop, default = Target("api", "shop"), Target("api")
    assert Router([shop, default]).resolve(request("api")) is default  # type: ignore[list-item]


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

"""DnsSource on a fake resolver and a fake clock: how DNS services are expanded, when
each name is looked up again, what a changed answer or a failure hands on, and how
new configurations from the inner source are treated."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tulle.config import Config, load
from tulle.discovery import DnsSource
from tulle.discovery.dns import DnsError, Resolved
from tulle.discovery.dns_source import Lookup, default_server

MANIFEST = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: api}}
spec:
  port: 443
  dns: {{name: {name}, type: A, server: "127.0.0.1:5353"{extra}}}
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: web}}
spec:
  endpoints: [{{address: "127.0.0.1:9001"}}]
"""


def config(tmp_path: Path, name: str = "api.example.com", extra: str = "",
           more: str = "") -> Config:
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(MANIFEST).format(name=name, extra=extra) + more)
    return load(path, environ={})


class FakeTime:
    """A clock that moves only when the test says so, and sleeps that wait for it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + delay, future)
        self.sleepers.append(entry)
        try:
            await future
        finally:
            self.sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        """Move time on one second at a time, letting the source run at each step."""
        target = self.now + seconds
        while True:
            self.now = min(self.now + 1.0, target)
            for deadline, future in list(self.sleepers):
                if deadline <= self.now and not future.done():
                    future.set_result(None)
            await settle()
            if self.now >= target:
                return


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class FakeResolver:
    """Answers by name: a list of ``host:port`` (weight 1) and a TTL, or an error."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.answers: dict[str, tuple[list[str], float] | Exception] = {}
        self.calls: list[tuple[float, Lookup]] = []

    async def __call__(self, target: Lookup) -> Resolved:
        self.calls.append((self.time.now, target))
        answer = self.answers[target.name]
        if isinstance(answer, Exception):
            raise answer
        addresses, ttl = answer
        return Resolved(endpoints=[(address, 1) for address in addresses], ttl=ttl)

    def times(self, name: str) -> list[float]:
        return [at for at, target in self.calls if target.name == name]


class FakeInner:
    def __init__(self, first: Config) -> None:
        self.first = first
        self.on_config: Callable[[Config, str], None] | None = None
        self.refreshed: list[str] = []
        self.stopped = False

    async def initial(self) -> Config:
        return self.first

    def start(self, on_config: Callable[[Config, str], None],
              on_error: Callable[[str], None]) -> None:
        self.on_config = on_config

    def refresh(self, reason: str) -> None:
        self.refreshed.append(reason)

    def stop(self) -> None:
        self.stopped = True


class Harness:
    def __init__(self, first: Config) -> None:
        self.time = FakeTime()
        self.resolver = FakeResolver(self.time)
        self.inner = FakeInner(first)
        self.source = DnsSource(self.inner, resolver=self.resolver, sleep=self.time.sleep,
                                clock=self.time.clock)
        self.configs: list[tuple[Config, str]] = []
        self.errors: list[str] = []

    async def start(self) -> Config:
        first = await self.source.initial()
        self.source.start(lambda c, why: self.configs.append((c, why)), self.errors.append)
        await settle()
        return first


def endpoints(config: Config, key: str = "api.default") -> list[str]:
    return [endpoint.address for endpoint in config.services[key].endpoints]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_initial_resolves_dns_services_and_leaves_static_ones_alone(tmp_path: Path) -> None:
    base = config(tmp_path)

    async def scenario() -> None:
        h = Harness(base)
        h.resolver.answers["api.example.com"] = (["10.0.0.2:443", "10.0.0.1:443"], 30)
        first = await h.start()
        assert endpoints(first) == ["10.0.0.1:443", "10.0.0.2:443"]
        assert first.services["web.default"] is base.services["web.default"]
        (_, target), = h.resolver.calls
        assert target == Lookup("api.example.com", "A", 443, ("127.0.0.1", 5353), 1.0, 300.0)
        h.source.stop()
        assert h.inner.stopped

    run(scenario)


def test_the_port_of_a_records_is_dns_port_when_given(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path, extra=", port: 8443"))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:8443"], 30)
        await h.start()
        assert h.resolver.calls[0][1].port == 8443
        h.source.stop()

    run(scenario)


def test_a_name_is_looked_up_again_when_its_ttl_runs_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 5)
        await h.start()
        await h.time.advance(12)
        assert h.resolver.times("api.example.com") == [0, 5, 10]
        assert h.configs == []  # the same answer: nothing handed on
        h.source.stop()

    run(scenario)


def test_a_changed_answer_hands_on_a_whole_config_with_that_service_replaced(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 2)
        first = await h.start()
        h.resolver.answers["api.example.com"] = (["10.0.0.7:443"], 2)
        await h.time.advance(2)
        (new, why), = h.configs
        assert endpoints(new) == ["10.0.0.7:443"]
        assert "api.example.com" in why
        assert new.services["web.default"] is first.services["web.default"]
        assert new.services["api.default"].timeouts == first.services["api.default"].timeouts
        assert endpoints(first) == ["10.0.0.1:443"]  # the old snapshot is unchanged
        h.source.stop()

    run(scenario)


@pytest.mark.parametrize(("ttl", "expected"), [(0.0, [0, 2, 4]), (3600.0, [0, 3])])
def test_the_ttl_is_clamped_to_min_and_max(tmp_path: Path, ttl: float,
                                           expected: list[float]) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path, extra=", minTtl: 2s, maxTtl: 3s"))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], ttl)
        await h.start()
        await h.time.advance(5)
        assert h.resolver.times("api.example.com") == expected
        h.source.stop()

    run(scenario)


def test_a_failure_at_start_means_no_endpoints_until_an_answer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = DnsError("no answer within 2 s")
        first = await h.start()
        assert endpoints(first) == []
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 30)
        await h.time.advance(1)
        (new, _), = h.configs
        assert endpoints(new) == ["10.0.0.1:443"]
        h.source.stop()

    with caplog.at_level(logging.INFO, logger="tulle.discovery.dns_source"):
        run(scenario)
    assert "no answer within 2 s" in caplog.text
    assert "answers again" in caplog.text


def test_failures_keep_the_last_endpoints_log_once_and_back_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 1)
        await h.start()
        h.resolver.answers["api.example.com"] = DnsError("SERVFAIL")
        await h.time.advance(20)
        assert h.configs == []  # the last endpoints stay
        # Retries from minTtl (1s), doubling: 1, 2, 4, 8 after the failure at t=1.
        assert h.resolver.times("api.example.com") == [0, 1, 2, 4, 8, 16]
        h.source.stop()

    with caplog.at_level(logging.WARNING, logger="tulle.discovery.dns_source"):
        run(scenario)
    failures = [r for r in caplog.records if "SERVFAIL" in r.getMessage()]
    assert len(failures) == 1
    assert "keeping its 1 endpoints" in failures[0].getMessage()


def test_a_new_inner_config_is_expanded_with_the_known_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 30)
        await h.start()
        (tmp_path / "again").mkdir()
        changed = config(tmp_path / "again")
        assert h.inner.on_config is not None
        h.inner.on_config(changed, "the manifests changed")
        (new, why), = h.configs
        assert why == "the manifests changed"
        assert endpoints(new) == ["10.0.0.1:443"]
        assert len(h.resolver.calls) == 1  # no new lookup for the same question
        h.source.stop()

    run(scenario)


def test_a_new_dns_service_is_looked_up_before_its_config_is_handed_on(
        tmp_path: Path) -> None:
    other = """---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: billing}
spec:
  dns: {name: billing.example.com, port: 8080, server: "127.0.0.1:5353"}
"""

    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 30)
        h.resolver.answers["billing.example.com"] = (["10.0.1.1:8080"], 30)
        await h.start()
        (tmp_path / "two").mkdir()
        assert h.inner.on_config is not None
        h.inner.on_config(config(tmp_path / "two", more=other), "the manifests changed")
        await settle()
        (new, why), = h.configs
        assert why == "the manifests changed"
        assert endpoints(new) == ["10.0.0.1:443"]
        assert endpoints(new, "billing.default") == ["10.0.1.1:8080"]
        assert [target.name for _, target in h.resolver.calls] == [
            "api.example.com", "billing.example.com"]
        h.source.stop()

    run(scenario)


def test_without_dns_services_configs_pass_through_untouched(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(textwrap.dedent(MANIFEST).format(name="x", extra="").split("---\n", 1)[1])
    base = load(path, environ={})

    async def scenario() -> None:
        h = Harness(base)
        assert await h.start() is base
        assert h.inner.on_config is not None
        h.inner.on_config(base, "SIGHUP")
        await h.time.advance(10)
        assert h.configs == [(base, "SIGHUP")]
        assert h.resolver.calls == []
        h.source.stop()

    run(scenario)


def test_refresh_looks_every_name_up_again_now(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(config(tmp_path))
        h.resolver.answers["api.example.com"] = (["10.0.0.1:443"], 300)
        await h.start()
        h.resolver.answers["api.example.com"] = (["10.0.0.9:443"], 300)
        h.source.refresh("SIGHUP")
        await settle()
        assert h.inner.refreshed == ["SIGHUP"]
        (new, _), = h.configs
        assert endpoints(new) == ["10.0.0.9:443"]
        h.source.stop()

    run(scenario)


def test_the_default_server_is_the_first_nameserver_of_resolv_conf(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nsearch example\nnameserver 10.96.0.10\nnameserver 8.8.8.8\n")
    assert default_server(resolv) == ("10.96.0.10", 53)
    resolv.write_text("search example\n")
    assert default_server(resolv) == ("127.0.0.1", 53)
    assert default_server(tmp_path / "missing") == ("127.0.0.1", 53)

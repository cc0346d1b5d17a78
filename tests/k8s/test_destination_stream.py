"""The destination API end to end in one process: ControlPlane ↔ ControlSource on loopback.

No cluster needed: the control plane runs on a source the test drives directly.
The reconnect schedule runs on an injected sleep, so the backoff is checked without
waiting for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import MappingProxyType

from tulle.config import Config, Endpoint, load
from tulle.control import ControlPlane
from tulle.discovery.backoff import Backoff
from tulle.discovery.control_client import ControlSource
from tulle.discovery.source import OnConfig, OnError


class DrivenSource:
    """A ConfigSource whose changes the test makes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.on_config: OnConfig | None = None

    async def initial(self) -> Config:
        return self.config

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        self.on_config = on_config

    def refresh(self, reason: str) -> None:
        pass

    def stop(self) -> None:
        pass

    def push(self, config: Config) -> None:
        self.config = config
        assert self.on_config is not None
        self.on_config(config, "test")


def _with_endpoints(config: Config, key: str, *addresses: str) -> Config:
    services = dict(config.services)
    endpoints = tuple(Endpoint(a.split(":")[0], int(a.split(":")[1])) for a in addresses)
    services[key] = replace(services[key], endpoints=endpoints)
    return Config(config.sources, config.mesh, MappingProxyType(services), config.routes)


async def _until(check, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_subscribe_update_outage_and_resync() -> None:
    base = load("examples")
    key = next(iter(base.services))
    source = DrivenSource(base)
    plane = ControlPlane(source, heartbeat=0.2)
    host, port = await plane.start("127.0.0.1", 0)
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0.01)  # let the loop run; the schedule itself is recorded

    client = ControlSource(f"http://{host}:{port}", proxy_id="p1", admin="127.0.0.1:4191",
                           zone="zone-z", sleep=fake_sleep,
                           backoff=Backoff(base=0.1, cap=0.8, uniform=lambda lo, hi: hi))
    received: list[Config] = []
    errors: list[str] = []
    first = await client.initial()
    assert first.services.keys() == base.services.keys()
    assert first.mesh.zone == "zone-z"
    client.start(lambda config, reason: received.append(config), errors.append)
    await _until(lambda: len(plane.subscribers) == 1)
    assert [s.admin for s in plane.subscribers] == ["127.0.0.1:4191"]

    changed = _with_endpoints(base, key, "127.0.0.1:9999")
    source.push(changed)
    await _until(lambda: len(received) == 1)
    assert [e.address for e in received[0].services[key].endpoints] == ["127.0.0.1:9999"]

    await plane.stop()  # the control plane goes away: the client keeps its last config
    await _until(lambda: len(delays) >= 4)
    assert errors and "keeping the last configuration" in errors[0]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert client.config is not None
    assert [e.address for e in client.config.services[key].endpoints] == ["127.0.0.1:9999"]

    # Back, on the same port, with a configuration that changed meanwhile.
    newer = _with_endpoints(base, key, "127.0.0.1:9998")
    plane = ControlPlane(DrivenSource(newer), heartbeat=0.2)
    await plane.start("127.0.0.1", port)
    await _until(lambda: len(received) == 2, timeout=5)
    assert [e.address for e in received[1].services[key].endpoints] == ["127.0.0.1:9998"]
    await _until(lambda: client.backoff.attempts == 0)
    await client.aclose()
    await plane.stop()


async def test_heartbeats_keep_a_quiet_stream_alive_and_silence_ends_it() -> None:
    source = DrivenSource(load("examples"))
    plane = ControlPlane(source, heartbeat=0.05)
    host, port = await plane.start("127.0.0.1", 0)
    client = ControlSource(f"{host}:{port}", silence_timeout=0.5)
    await client.initial()
    client.start(lambda config, reason: None, lambda message: None)
    await asyncio.sleep(1.0)  # twice the silence timeout, but heartbeats arrive
    assert client.connections == 1 and client.connected
    await client.aclose()
    await plane.stop()

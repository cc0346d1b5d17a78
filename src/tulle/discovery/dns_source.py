"""Endpoints from DNS: a ``ConfigSource`` wrapper that resolves ``MeshService.spec.dns``.

:class:`DnsSource` wraps another source (manifests on disk, a cluster). Its first
configuration is the inner one with every DNS service's endpoints looked up; a
lookup that fails at start leaves that service without endpoints (logged, not
fatal). Afterwards each lookup is repeated when its TTL (clamped to the service's
``[minTtl, maxTtl]``) runs out, and when an answer differs from the last one the
source hands on a new whole ``Config`` with that service's endpoints replaced.
A new configuration from the inner source is expanded with the answers already
known; a lookup it adds (a new service, a changed name, port or server) is
resolved before that configuration is handed on.

A failing lookup keeps the last endpoints it found and is retried sooner (from
``minTtl``, doubling up to 30 s or ``maxTtl``); the failure and the recovery are
each logged once. With no DNS service in the configuration the wrapper only
passes configurations through. Time comes from injectable ``sleep``/``clock`` and
the lookups from an injectable ``resolver``, so the schedule is unit-testable.

Lookups go over UDP (``tulle.discovery.dns``) to the service's ``server`` or the
first nameserver of /etc/resolv.conf. SRV targets that are names are resolved with
A (then AAAA) at the same server; only the lowest SRV priority is used and weight
0 counts as 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tulle.config import Address, Config, Endpoint
from tulle.discovery.dns import DEFAULT_TIMEOUT, DnsError, Resolved, query, resolve
from tulle.discovery.dns_wire import TYPE_A, TYPE_AAAA, TYPE_SRV, SrvData
from tulle.discovery.source import ConfigSource, OnConfig, OnError

log = logging.getLogger(__name__)

RESOLV_CONF = Path("/etc/resolv.conf")
FALLBACK_SERVER = ("127.0.0.1", 53)
MAX_RETRY = 30.0
_RECORD_TYPES = {"A": TYPE_A, "AAAA": TYPE_AAAA, "SRV": TYPE_SRV}


@dataclass(frozen=True, slots=True)
class Lookup:
    """One DNS question a service needs answered (services asking the same share it)."""

    name: str
    type: str
    port: int  # A/AAAA: the endpoints' port; SRV: 0
    server: tuple[str, int]
    min_ttl: float
    max_ttl: float

    def describe(self) -> str:
        return f"{self.name} {self.type} (at {self.server[0]}:{self.server[1]})"


Resolver = Callable[[Lookup], Awaitable[Resolved]]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(slots=True)
class _Answer:
    endpoints: tuple[Endpoint, ...] | None = None  # None: never resolved
    due: float = 0.0
    failures: int = 0
    error: str | None = None


def default_server(resolv_conf: Path = RESOLV_CONF) -> tuple[str, int]:
    """The first ``nameserver`` in resolv.conf at port 53 (127.0.0.1:53 when none)."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return FALLBACK_SERVER
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1].split("%")[0], 53
    return FALLBACK_SERVER


async def lookup(target: Lookup, timeout: float = DEFAULT_TIMEOUT) -> Resolved:
    """Resolve ``target`` over UDP (raises DnsError): see the module docstring."""
    rtype = _RECORD_TYPES[target.type]
    if rtype != TYPE_SRV:
        return await resolve(target.server, target.name, rtype, port=target.port,
                             timeout=timeout, min_ttl=target.min_ttl, max_ttl=target.max_ttl)
    response = await query(target.server, target.name, TYPE_SRV, timeout)
    if response.truncated:
        raise DnsError(f"the answer for {target.name} was truncated (TCP fallback not supported)")
    if response.rcode:
        raise DnsError(f"{target.name}: {response.rcode_name}")
    records = [(record.ttl, record.data) for record in response.answers
               if record.rtype == TYPE_SRV and isinstance(record.data, SrvData)
               and record.data.target not in ("", ".")]
    if not records:
        return Resolved(endpoints=[], ttl=target.max_ttl)
    best = min(data.priority for _, data in records)
    chosen = [(ttl, data) for ttl, data in records if data.priority == best]
    hosts = await asyncio.gather(*(_addresses(target, data.target, timeout)
                                   for _, data in chosen))
    ttls = [float(ttl) for ttl, _ in chosen]
    endpoints: list[tuple[str, int]] = []
    for (_, data), (addresses, ttl) in zip(chosen, hosts, strict=True):
        if ttl is not None:
            ttls.append(ttl)
        for host in addresses:
            endpoints.append((str(Address(host, data.port)), max(data.weight, 1)))
    ttl = min(max(min(ttls), target.min_ttl), target.max_ttl)
    return Resolved(endpoints=sorted(set(endpoints)), ttl=ttl)


async def _addresses(target: Lookup, host: str, timeout: float) -> tuple[list[str], float | None]:
    """An SRV target's addresses (itself when it is an IP) and their TTL."""
    host = host.rstrip(".")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return [host], None
    for rtype in (TYPE_A, TYPE_AAAA):
        found = await resolve(target.server, host, rtype, port=1, timeout=timeout,
                              min_ttl=0.0, max_ttl=target.max_ttl)
        if found.endpoints:
            return [Address.parse(address).host for address, _ in found.endpoints], found.ttl
    return [], None


class DnsSource:
    """Wraps ``inner``: services with ``spec.dns`` get their endpoints from DNS."""

    def __init__(
        self,
        inner: ConfigSource,
        *,
        resolver: Resolver | None = None,
        server: tuple[str, int] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self._inner = inner
        self._resolver: Resolver = resolver or lookup
        self._server = server
        self._sleep = sleep
        self._clock = clock
        self._answers: dict[Lookup, _Answer] = {}
        self._base: Config | None = None
        self._pending: str | None = None  # why the base changed, not yet handed on
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_config: OnConfig | None = None

    # -- ConfigSource --

    async def initial(self) -> Config:
        config = await self._inner.initial()
        self._base = config
        await self._resolve(self._missing(config))
        return self._expand(config)

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        self._on_config = on_config
        self._inner.start(self._inner_config, on_error)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def refresh(self, reason: str) -> None:
        """Re-read the inner source and look every DNS name up again now."""
        now = self._clock()
        for answer in self._answers.values():
            answer.due = min(answer.due, now)
        self._wake.set()
        self._inner.refresh(reason)

    def stop(self) -> None:
        self._inner.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # -- internals --

    def lookups(self, config: Config) -> dict[str, Lookup]:
        """The lookup of each DNS service in ``config``, by service key."""
        found: dict[str, Lookup] = {}
        for key, service in config.services.items():
            dns = service.dns
            if dns is None:
                continue
            server = (dns.server.host, dns.server.port) if dns.server else self._default_server()
            port = 0 if dns.type == "SRV" else (dns.port or service.port)
            found[key] = Lookup(dns.name, dns.type, port, server, dns.min_ttl, dns.max_ttl)
        return found

    def _default_server(self) -> tuple[str, int]:
        if self._server is None:
            self._server = default_server()
        return self._server

    def _missing(self, config: Config) -> list[Lookup]:
        return [target for target in set(self.lookups(config).values())
                if target not in self._answers]

    def _expand(self, config: Config) -> Config:
        """``config`` with each DNS service's endpoints the last answer for it."""
        lookups = self.lookups(config)
        if not lookups:
            return config
        for stale in set(self._answers) - set(lookups.values()):
            del self._answers[stale]
        services = dict(config.services)
        for key, target in lookups.items():
            answer = self._answers.get(target)
            endpoints = answer.endpoints if answer and answer.endpoints else ()
            services[key] = dataclasses.replace(services[key], endpoints=endpoints)
        return dataclasses.replace(config, services=MappingProxyType(services))

    def _inner_config(self, config: Config, reason: str) -> None:
        self._base = config
        if self._missing(config):
            self._pending = reason  # handed on once the new lookups are answered
            self._wake.set()
        else:
            self._pending = None
            self._emit(reason)

    def _emit(self, reason: str) -> None:
        if self._on_config is not None and self._base is not None:
            self._on_config(self._expand(self._base), reason)

    async def _resolve(self, targets: list[Lookup]) -> list[Lookup]:
        """Look ``targets`` up at once; the ones whose endpoints changed."""
        results = await asyncio.gather(*(self._resolve_one(t) for t in targets))
        return [target for target, changed in zip(targets, results, strict=True) if changed]

    async def _resolve_one(self, target: Lookup) -> bool:
        answer = self._answers.setdefault(target, _Answer())
        try:
            resolved = await self._resolver(target)
        except (DnsError, OSError, ValueError) as exc:  # DnsFormatError is a ValueError
            answer.failures += 1
            retry = min(target.min_ttl * 2 ** (answer.failures - 1),
                        max(target.min_ttl, min(MAX_RETRY, target.max_ttl)))
            answer.due = self._clock() + retry
            message = str(exc) or type(exc).__name__
            if answer.error is None:
                kept = (f"keeping its {len(answer.endpoints)} endpoints"
                        if answer.endpoints is not None else "no endpoints yet")
                log.warning("DNS lookup %s failed: %s (%s; retrying)", target.describe(),
                            message, kept)
            answer.error = message
            return False
        if answer.error is not None:
            log.info("DNS lookup %s answers again", target.describe())
        answer.failures = 0
        answer.error = None
        answer.due = self._clock() + min(max(resolved.ttl, target.min_ttl), target.max_ttl)
        endpoints = []
        for address, weight in resolved.endpoints:
            parsed = Address.parse(address)
            endpoints.append(Endpoint(parsed.host, parsed.port, weight))
        new = tuple(sorted(endpoints, key=lambda e: (e.host, e.port)))
        if new == answer.endpoints:
            return False
        if answer.endpoints is not None or new:
            log.info("DNS %s: %s", target.describe(),
                     ", ".join(e.address for e in new) or "no endpoints")
        answer.endpoints = new
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop every later lookup
                log.exception("DNS re-resolution failed; trying again in 1 s")
                await self._wait(1.0)

    async def _step(self) -> None:
        """One round: look up what is due and hand on any change, else wait."""
        if self._base is None:
            await self._wait(None)
            return
        wanted = set(self.lookups(self._base).values())
        now = self._clock()
        due = [target for target in wanted
               if target not in self._answers or self._answers[target].due <= now]
        if due:
            changed = await self._resolve(due)
            if self._pending is not None:
                reason, self._pending = self._pending, None
                self._emit(reason)
            elif changed:
                names = ", ".join(sorted({target.name for target in changed}))
                self._emit(f"the DNS answer for {names} changed")
            return
        if self._pending is not None:  # e.g. the new lookups went away again
            reason, self._pending = self._pending, None
            self._emit(reason)
        deadline = min((self._answers[t].due for t in wanted), default=None)
        await self._wait(None if deadline is None else max(deadline - now, 0.0))

    async def _wait(self, delay: float | None) -> None:
        """Until ``delay`` seconds pass (forever if None) or something wakes the loop."""
        self._wake.clear()
        woken = asyncio.ensure_future(self._wake.wait())
        waiters: set[asyncio.Future[None]] = {woken}
        if delay is not None:
            waiters.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

"""``tulle proxy --workers N``: N proxy processes on the same ports, one admin port for all.

One Python process runs Python on one core at a time, so a proxy that should use more
cores runs more processes (DESIGN.md: "worker processes on one SO_REUSEPORT listener,
metrics merged in the admin process — not threads"). The `Supervisor`, in the process
the user started, runs N workers. Each worker is a whole ``tulle proxy`` started with a
hidden ``--worker-channel``: it binds the outbound and inbound listeners with
SO_REUSEPORT, so the kernel spreads new connections over the workers' sockets (by a hash
of the connection's addresses; no accept lock, no hand-off between processes), and binds
its admin listener privately on 127.0.0.1. The supervisor binds the public admin port
and answers it for all workers: ``/metrics`` summed, ``/endpoints`` merged
(`tulle.telemetry.merged`), ``/tap`` relayed (`tulle.telemetry.tap_relay`), ``/config``
from a worker, ``/ready`` while any worker serves, and ``/workers``. It imports none of
the request path: the supervisor stays small, and each worker is a proxy as it would be
alone.

Theory of operation. Each of the N places ("slots") holds one worker at a time and
moves through `SLOT` (states × events, a table):

    empty --start--> starting --reported--> serving --exited--> empty
    starting --exited--> empty;  starting, serving --stop--> stopping --exited--> stopped
    empty --stop--> stopped

- Start. Worker 1 starts with the command line as given; once it reports
  (`WorkerReady`: its bound ports, its private admin port, the public admin address its
  configuration names), the supervisor binds the public admin address and starts
  workers 2..N on the very addresses worker 1 bound (so port 0 and addresses from the
  manifests work). A worker that exits before every worker has served once fails the
  start: the others are stopped and the command exits 1 (a bad manifest would only
  crash every restart).
- Exits. A worker that exits later is logged and replaced after a delay that doubles
  with each run shorter than `STABLE_RUN` (`restart_delay`), so a crash loop does not
  spin; its last-read counters stay in the merged metrics. With SO_REUSEPORT, the
  connections a dead worker had accepted, or had waiting in its accept queue, are lost
  with it; new connections go to the workers left.
- Signals. SIGHUP is forwarded to every worker (each re-reads its manifests). SIGTERM
  and SIGINT stop: ``/ready`` answers 503, every worker gets SIGTERM and drains as a
  single proxy does (``--shutdown-grace``), and the command exits 0 once all exited 0.
- Lifelines (`tulle.proxy.worker_channel`): if the supervisor dies, however it dies,
  each worker reads EOF on its channel, drains and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tulle.proxy.transitions import Machine
from tulle.proxy.worker_channel import MAX_READY_BYTES, WorkerReady
from tulle.telemetry.admin import AdminSources, serve_admin
from tulle.telemetry.merged import MergedMetrics, merge_endpoints
from tulle.telemetry.scrape import fetch_metrics_async, split_address
from tulle.telemetry.tap_relay import WorkerTaps

log = logging.getLogger("tulle.workers")

# A worker that served this long before it exited is restarted at once; one that exits
# sooner again and again is restarted after RESTART_DELAY_MIN, doubling up to the max,
# so a worker that cannot start costs a process start every 30 s, not a spinning core.
STABLE_RUN = 10.0
RESTART_DELAY_MIN = 0.5
RESTART_DELAY_MAX = 30.0
# Past --shutdown-grace, what a draining worker gets to close and exit before SIGKILL.
EXIT_MARGIN = 5.0
# How long a read of a worker's admin page may take (on loopback: milliseconds).
GATHER_TIMEOUT = 2.0
# How long an exiting worker may hold on after its channel closed (it closes at exit).
REAP_TIMEOUT = 5.0

EMPTY, STARTING, SERVING, STOPPING, STOPPED = range(5)
START, REPORTED, EXITED, STOP = range(4)
SLOT = Machine(
    "worker slot",
    states=("empty", "starting", "serving", "stopping", "stopped"),
    events=("start", "reported", "exited", "stop"),
    moves={
        "empty": {"start": "starting", "stop": "stopped"},
        "starting": {"reported": "serving", "exited": "empty", "stop": "stopping"},
        "serving": {"exited": "empty", "stop": "stopping"},
        "stopping": {"reported": "stopping", "exited": "stopped", "stop": "stopping"},
        "stopped": {"stop": "stopped"},
    },
)


# A container's CPU limit, as cgroup v2 shows it inside the container: "quota period"
# in microseconds, or "max period" for none (kernel docs, cgroup-v2 "cpu.max").
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use (``--workers auto``): its affinity mask (taskset,
    cpusets), lowered by a cgroup v2 CPU quota (a container's CPU limit), at least 1."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask decides
    return max(1, cpus)


def restart_delay(short_runs: int) -> float:
    """Seconds before a worker is started again after ``short_runs`` runs in a row shorter
    than `STABLE_RUN` (0: it had served a while)."""
    if short_runs <= 0:
        return 0.0
    return min(RESTART_DELAY_MAX, RESTART_DELAY_MIN * 2 ** min(short_runs - 1, 16))


@dataclass(frozen=True)
class WorkerCommand:
    """How a worker is started: ``tulle proxy`` with the supervisor's own options.

    ``options`` are (flag, value) pairs, value None for a flag that takes none. Once
    worker 1 has bound, every later worker gets its addresses instead of those given.
    """

    options: tuple[tuple[str, str | None], ...]

    def argv(self, index: int, channel: int, bound: WorkerReady | None) -> list[str]:
        given = dict(self.options)
        if bound is not None:
            given.update({"--outbound": bound.outbound, "--inbound": bound.inbound or "off",
                          "--admin": bound.public_admin})
        argv = [sys.executable, "-m", "tulle", "proxy"]
        for flag, value in given.items():
            argv += [flag] if value is None else [flag, value]
        return [*argv, "--worker-index", str(index), "--worker-channel", str(channel)]


@dataclass(eq=False)
class _Slot:
    """One of the N places, and the worker process in it now."""

    index: int
    state: int = EMPTY
    process: subprocess.Popen[bytes] | None = None
    ready: WorkerReady | None = None
    started_at: float = 0.0  # time.monotonic() of the last start
    short_runs: int = 0  # runs in a row shorter than STABLE_RUN
    restarts: int = 0
    timer: asyncio.TimerHandle | None = None
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    def move(self, event: int) -> None:
        self.state = SLOT.move(self.state, event)

    def describe(self) -> dict[str, object]:
        return {
            "worker": self.index,
            "state": SLOT.states[self.state],
            "pid": self.process.pid if self.process is not None else None,
            "admin": self.ready.admin if self.ready is not None else None,
            "restarts": self.restarts,
            "uptimeSeconds": round(time.monotonic() - self.started_at, 1)
            if self.state == SERVING else None,
        }


class Supervisor:
    """Runs N workers and the public admin port for them (module note)."""

    def __init__(
        self,
        command: WorkerCommand,
        count: int,
        admin: str | None = None,
        allow_tap: bool = False,
        shutdown_grace: float = 10.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.command = command
        self.admin = admin  # None: the address worker 1's configuration names
        self.allow_tap = allow_tap
        self.shutdown_grace = shutdown_grace
        self.slots = [_Slot(index) for index in range(1, count + 1)]
        self.metrics = MergedMetrics()
        self.taps = WorkerTaps(self.loop.time, self._serving_admins)
        self._bound: WorkerReady | None = None  # worker 1's first report
        self._admin_server: asyncio.Server | None = None
        self._endpoints: dict[str, object] = {}
        self._config: object = {}
        self._changed = asyncio.Event()  # a slot reported or exited, or stop was asked
        self._stop_asked = False
        self._started = False
        self._failed = False
        self._exit_codes: list[int] = []  # of workers that exited while stopping

    # -- running --

    async def run(self) -> int:
        """Start the workers, serve until SIGTERM/SIGINT, stop them; the exit status."""
        for sig, handler in ((signal.SIGHUP, self._forward_sighup),
                             (signal.SIGTERM, self.stop), (signal.SIGINT, self.stop)):
            self.loop.add_signal_handler(sig, handler)
        try:
            if await self._start():
                while not self._stop_asked:  # bounded by SIGTERM/SIGINT (or stop())
                    await self._wait_change()
            await self._stop_all()
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(sig)
            self.taps.close()
            if self._admin_server is not None:
                self._admin_server.close()
        # A worker stopped before it handled signals ends by SIGTERM itself: as asked.
        clean = not self._failed and all(code in (0, -signal.SIGTERM)
                                         for code in self._exit_codes)
        log.info("stopped")
        return 0 if clean else 1

    def stop(self) -> None:
        if not self._stop_asked:
            log.info("stopping %d workers", len(self.slots))
        self._stop_asked = True
        self._changed.set()

    @property
    def ready(self) -> bool:
        return (self._started and not self._stop_asked
                and any(slot.state == SERVING for slot in self.slots))

    # -- start --

    async def _start(self) -> bool:
        first, *others = self.slots
        self._spawn(first)
        if not await self._until_serving([first]):
            return False
        self._bound = first.ready
        assert self._bound is not None
        if not await self._bind_admin(self.admin or self._bound.public_admin):
            return False
        for slot in others:
            self._spawn(slot)
        if not await self._until_serving(others):
            return False
        self._started = True
        log.info("%d workers serving on %s%s", len(self.slots), self._bound.outbound,
                 f" and {self._bound.inbound}" if self._bound.inbound else "")
        return True

    async def _until_serving(self, slots: list[_Slot]) -> bool:
        while not all(slot.state == SERVING for slot in slots):  # bounded: each reports or exits
            if self._failed or self._stop_asked:
                return False
            await self._wait_change()
        return not (self._failed or self._stop_asked)

    async def _wait_change(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def _bind_admin(self, address: str) -> bool:
        host, port = split_address(address)
        sources = AdminSources(
            registry=self._registry,
            tap=self.taps,
            tap_enabled=self.allow_tap,
            ready=lambda: self.ready,
            config=lambda: self._config,
            endpoints=lambda: self._endpoints,
            gather=self._gather,
            pages={b"/workers": lambda: [slot.describe() for slot in self.slots]},
        )
        try:
            self._admin_server = await serve_admin(self.loop, host, port, sources)
        except OSError as exc:
            log.error("cannot listen on the admin address %s: %s", address, exc)
            self._failed = True
            return False
        host, port = self._admin_server.sockets[0].getsockname()[:2]
        log.info("admin on http://%s:%d (for all %d workers)", host, port, len(self.slots))
        return True

    def _registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.metrics)
        registry.register(_SupervisorCollector(self.slots))
        return registry

    # -- workers --

    def _spawn(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        argv = self.command.argv(slot.index, theirs.fileno(), self._bound)
        slot.move(START)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
        except OSError as exc:
            ours.close()
            log.error("worker %d cannot start: %s", slot.index, exc)
            self._exited(slot, None, 127)
            return
        finally:
            theirs.close()
        slot.process, slot.ready = process, None
        slot.started_at = time.monotonic()
        slot.watcher = self.loop.create_task(self._watch(slot, process, ours))

    async def _watch(
        self, slot: _Slot, process: subprocess.Popen[bytes], sock: socket.socket
    ) -> None:
        """Read the worker's report, then wait for its channel to close: it exited."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_READY_BYTES)
        try:
            line = await reader.readline()
            if line.endswith(b"\n"):
                try:
                    self._serving(slot, WorkerReady.decode(line))
                except ValueError as exc:
                    log.error("worker %d (pid %d): %s", slot.index, process.pid, exc)
                    process.kill()
            while await reader.read(256):  # bounded: the worker sends one line, then EOF
                pass
        except (OSError, ValueError, asyncio.LimitOverrunError):
            process.kill()
        finally:
            writer.close()
        self._exited(slot, process, await _reap(process))

    def _serving(self, slot: _Slot, ready: WorkerReady) -> None:
        slot.move(REPORTED)
        slot.ready = ready
        self._changed.set()
        if slot.state != SERVING:
            return  # stopping already
        log.info("worker %d (pid %d) serving; its admin on %s", slot.index, ready.pid,
                 ready.admin)
        self.taps.worker_serving(ready.admin)

    def _exited(self, slot: _Slot, process: subprocess.Popen[bytes] | None, code: int) -> None:
        ran = time.monotonic() - slot.started_at
        if process is not None:
            self.metrics.retire(process.pid)
        slot.move(EXITED)
        slot.ready = None
        self._changed.set()
        pid = process.pid if process is not None else 0
        if slot.state == STOPPED:  # as asked
            self._exit_codes.append(code)
            if code not in (0, -signal.SIGTERM):
                log.warning("worker %d (pid %d) %s while stopping", slot.index, pid, _how(code))
            return
        if not self._started:
            log.error("worker %d (pid %d) %s before serving; stopping", slot.index, pid,
                      _how(code))
            self._failed = True
            return
        slot.short_runs = 0 if ran >= STABLE_RUN else slot.short_runs + 1
        delay = restart_delay(slot.short_runs)
        log.warning("worker %d (pid %d) %s after %.1f s; starting a new one in %.1f s",
                    slot.index, pid, _how(code), ran, delay)
        slot.timer = self.loop.call_later(delay, self._restart, slot)

    def _restart(self, slot: _Slot) -> None:
        slot.timer = None
        slot.restarts += 1
        self._spawn(slot)

    def _serving_admins(self) -> list[str]:
        return [slot.ready.admin for slot in self.slots
                if slot.state == SERVING and slot.ready is not None]

    # -- signals and stop --

    def _forward_sighup(self) -> None:
        log.info("SIGHUP: reloading every worker")
        for slot in self.slots:
            # Not to a starting worker: it reads the manifests anyway, and SIGHUP would
            # end it before it handles the signal.
            if slot.process is not None and slot.state == SERVING:
                slot.process.send_signal(signal.SIGHUP)

    async def _stop_all(self) -> None:
        """SIGTERM every worker; wait for them to drain (SIGKILL past the grace)."""
        for slot in self.slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            was = slot.state
            slot.move(STOP)
            if was in (STARTING, SERVING) and slot.process is not None:
                slot.process.send_signal(signal.SIGTERM)
        deadline = self.loop.time() + self.shutdown_grace + EXIT_MARGIN
        while any(slot.state != STOPPED for slot in self.slots):  # bounded by the deadline
            left = deadline - self.loop.time()
            if left <= 0:
                for slot in self.slots:
                    if slot.state != STOPPED and slot.process is not None:
                        log.warning("worker %d (pid %d) still running; killed", slot.index,
                                    slot.process.pid)
                        slot.process.kill()
                left = math.inf  # a killed worker's channel closes: its watcher reaps it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_change(), left)

    # -- the public admin's pages --

    async def _gather(self, path: bytes) -> None:
        serving = [slot for slot in self.slots if slot.state == SERVING and slot.ready]
        answers = await asyncio.gather(
            *(fetch_metrics_async(slot.ready.admin, GATHER_TIMEOUT, path.decode())  # type: ignore[union-attr]
              for slot in serving),
            return_exceptions=True,
        )
        if path == b"/metrics":
            for slot, answer in zip(serving, answers, strict=True):
                assert slot.ready is not None
                self.metrics.update(slot.ready.pid, answer if isinstance(answer, str) else None)
            return
        pages = []
        for answer in answers:
            if isinstance(answer, str):
                try:
                    pages.append(json.loads(answer))
                except ValueError:
                    continue
        if path == b"/endpoints":
            self._endpoints = merge_endpoints(pages)
        else:  # /config: every worker reads the same manifests
            self._config = pages[0] if pages else {}


class _SupervisorCollector(Collector):
    def __init__(self, slots: list[_Slot]) -> None:
        self._slots = slots

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tulle_workers_serving", "Worker processes serving now (tulle proxy --workers).",
            value=sum(slot.state == SERVING for slot in self._slots))
        yield CounterMetricFamily(
            "tulle_worker_restarts", "Worker processes started again after one exited.",
            value=sum(slot.restarts for slot in self._slots))


async def _reap(process: subprocess.Popen[bytes]) -> int:
    """The exit status of a worker whose channel closed (it is exiting)."""
    deadline = time.monotonic() + REAP_TIMEOUT
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.01)
    process.kill()  # it closed its channel but lingers: it is not a working worker
    return process.wait()


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"

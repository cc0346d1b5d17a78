"""Start, pin, measure and reliably stop the processes a benchmark needs.

Every process the bench starts goes through one :class:`ProcessGroup`, which stops
them all (SIGTERM, then SIGKILL) when the run ends, also on Ctrl-C or an exception.
As a last line of defence each child asks the kernel to kill it if the bench itself
dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the bench leaves no orphans either.

Children run in their own session so a Ctrl-C in the terminal reaches only the
bench, which then shuts them down in order instead of racing them.

CPU and memory figures come straight from ``/proc``: utime+stime from
``/proc/<pid>/stat`` and the peak resident set (``VmHWM``) from
``/proc/<pid>/status`` (see proc(5)).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# From <linux/prctl.h>; used so that children die with the bench (see module note).
_PR_SET_PDEATHSIG = 1

# How long a process gets to exit after SIGTERM before it is killed. Tulle drains
# for up to this long by design; nginx and HAProxy stop at once.
STOP_GRACE_SECONDS = 10.0

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the proxy under test and everything else (load, backends) run on.

    On a 2-core machine the proxy gets CPU 0 to itself and the load generator and
    backends share CPU 1, so the proxy does not compete with the load it measures.
    ``None`` means "not pinned" (fewer than 2 CPUs, or ``--no-pin``).
    """

    proxy: frozenset[int] | None
    others: frozenset[int] | None

    @classmethod
    def choose(cls, enabled: bool = True) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2:
            return cls(proxy=None, others=None)
        return cls(proxy=frozenset(cpus[:1]), others=frozenset(cpus[1:]))

    def describe(self) -> str:
        if self.proxy is None or self.others is None:
            return "not pinned: every process may run on any CPU"
        return (
            f"proxy under test pinned to CPU {_cpus(self.proxy)}; load generator and "
            f"backends pinned to CPU {_cpus(self.others)} (sched_setaffinity, like "
            f"`taskset -c`)"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _child_setup(cpus: frozenset[int] | None) -> None:
    """Runs in the child between fork and exec: pin it, and tie its life to ours."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Started:
    """A long-running process the group owns (a backend or a proxy)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """Owns every child process of a run; :meth:`stop_all` leaves none behind."""

    log_dir: Path
    started: list[Started] = field(default_factory=list)
    _transient: set[subprocess.Popen[bytes]] = field(default_factory=set)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: frozenset[int] | None,
        env: dict[str, str] | None = None,
    ) -> Started:
        """Start a long-running process; its stdout and stderr go to ``<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(cpus),
                env=env,
            )
        started = Started(name=name, popen=popen, log_path=log_path)
        self.started.append(started)
        return started

    def run(
        self, argv: Sequence[str], cpus: frozenset[int] | None, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a bounded command (a load generator) to completion and capture output.

        The command is killed if it outlives ``timeout`` or if the bench is
        interrupted while it runs.
        """
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(cpus),
        )
        self._transient.add(popen)
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            popen.kill()
            popen.communicate()
            raise RuntimeError(f"{argv[0]} did not finish within {timeout:.0f} s") from exc
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
            self._transient.discard(popen)
        return subprocess.CompletedProcess(list(argv), popen.returncode, out, err)

    def stop(self, started: Started, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        popen = started.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # Worth knowing: a proxy that does not stop on SIGTERM is a finding.
                print(
                    f"[bench] {started.name} did not exit within {grace:g} s of SIGTERM; killed",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait()
        if started in self.started:
            self.started.remove(started)
        return popen.returncode

    def stop_all(self) -> None:
        """Stop every child, newest first (proxies before the backends behind them)."""
        for popen in list(self._transient):
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait()
        self._transient.clear()
        for started in reversed(list(self.started)):
            self.stop(started)


@contextlib.contextmanager
def process_group(log_dir: Path) -> Iterator[ProcessGroup]:
    """A :class:`ProcessGroup` whose children are stopped however the block exits.

    A second Ctrl-C while stopping is ignored, so cleanup cannot be cut short.
    """
    group = ProcessGroup(log_dir=log_dir)
    try:
        yield group
    finally:
        previous = None
        with contextlib.suppress(ValueError):  # not in the main thread
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            group.stop_all()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1, chosen by the kernel.

    The sockets stay bound until all ports are picked, so the kernel never hands the
    same port out twice; the small window before the peer binds it is accepted.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds spent in user space and in the kernel on a process's behalf."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def cpu_times(pid: int) -> CpuTimes:
    """User and system CPU time of ``pid`` and its live descendants."""
    times = [_own_cpu_times(p) for p in _tree(pid)]
    return CpuTimes(sum(t.user for t in times), sum(t.system for t in times))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants, in seconds."""
    return cpu_times(pid).total


def machine_busy_seconds() -> float:
    """CPU time every CPU of the machine has spent not idle so far (``/proc/stat``),
    in seconds: the proxy, the load generator, the backends and the kernel alike."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0]
              .split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(fields) - fields[3] - fields[4]) / _CLOCK_TICKS


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size (``VmHWM``) of ``pid`` and its descendants, in KiB.

    Summed over the tree, so a multi-process peer is an upper bound; every peer in
    the baseline is a single process.
    """
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def _own_cpu_times(pid: int) -> CpuTimes:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return CpuTimes(0.0, 0.0)
    # The command name (field 2) may contain spaces; fields after it are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return CpuTimes(utime / _CLOCK_TICKS, stime / _CLOCK_TICKS)


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.extend(children)
        frontier.extend(children)
    return tree


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` until it returns true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())

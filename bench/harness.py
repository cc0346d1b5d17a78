"""What a scenario is given to work with: a temp dir, its processes, pinning, and load.

A :class:`Harness` lives for one scenario run. It owns the temp dir every config
and log is written to and the :class:`~bench.processes.ProcessGroup` that stops
every process at the end; it places each process on the right CPUs (proxy under
test vs. everything else), and it measures a peer's CPU time and memory. Scenarios
use it and never start a process themselves, so none of them can leak one.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import load, peers
from bench.processes import (
    CpuTimes,
    Pinning,
    ProcessGroup,
    cpu_seconds,
    cpu_times,
    peak_rss_kib,
    process_group,
)

T = TypeVar("T")


@dataclass
class Harness:
    """The resources of one scenario run (see module note)."""

    workdir: Path
    group: ProcessGroup
    pinning: Pinning
    results_dir: Path
    peer_names: tuple[str, ...] = peers.PEER_NAMES

    def log(self, message: str) -> None:
        """Progress on stderr, so a long run shows it is alive."""
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    def start_backends(self, count: int = 3) -> peers.Backends:
        """Start ``count`` backends (on the load generator's CPUs)."""
        return peers.start_backends(self.group, self.workdir, count, self.pinning.others)

    def start_peers(self, backends: peers.Backends) -> list[peers.Peer]:
        """Start every selected peer in front of ``backends`` (proxies on the proxy CPU)."""
        started = []
        for name in self.peer_names:
            started.append(
                peers.start_peer(name, self.group, self.workdir, backends, self.pinning.proxy)
            )
            self.log(f"{name} is serving")
        return started

    def start_tulle_workers(self, backends: peers.Backends, workers: int) -> peers.Peer:
        """``tulle proxy --workers N`` (peer ``tulle-Nw``), unpinned: its workers may run
        on every CPU, the load generator's included."""
        peer = peers.start_tulle_workers(self.group, self.workdir, backends, workers, None)
        self.log(f"{peer.name} is serving")
        return peer

    def start_scaled_peer(self, name: str, backends: peers.Backends, count: int
                          ) -> peers.Peer:
        """Peer ``name`` with ``count`` processes or threads on one port, unpinned like
        :meth:`start_tulle_workers`: ``tulle --workers``, ``haproxy`` with ``nbthread``,
        ``floor`` forked."""
        if name == "tulle":
            return self.start_tulle_workers(backends, count)
        if name == "haproxy":
            peer = peers.start_haproxy_threads(self.group, self.workdir, backends, count, None)
        elif name == "floor":
            peer = peers.start_floor_processes(self.group, backends, count, None)
        else:
            raise peers.PeerFailed(f"no scaled variant of {name!r}")
        self.log(f"{peer.name} is serving")
        return peer

    def wrk(self, peer: peers.Peer, seconds: int, connections: int) -> load.WrkResult:
        return load.run_wrk(self.group, peer.url, seconds, connections, self.pinning.others)

    def hey(self, peer: peers.Peer, seconds: float, rate: int) -> load.HeyResult:
        return load.run_hey(self.group, peer.url, seconds, rate, self.pinning.others)

    def measured(self, peer: peers.Peer, run: Callable[[], T]) -> tuple[T, float | None]:
        """Run ``run()`` (a load run) and return its result and the CPU seconds the
        peer's process used meanwhile (None for ``direct``). Fails if the peer died."""
        before = self.cpu_seconds(peer)
        result = run()
        after = self.cpu_seconds(peer)
        self.check_alive(peer)
        cpu = None if before is None or after is None else after - before
        return result, cpu

    def measured_times(
        self, peer: peers.Peer, run: Callable[[], T]
    ) -> tuple[T, CpuTimes | None]:
        """Like `measured`, with the peer's CPU split into user and system time."""
        before = None if peer.pid is None else cpu_times(peer.pid)
        result = run()
        after = None if peer.pid is None else cpu_times(peer.pid)
        self.check_alive(peer)
        return result, None if before is None or after is None else after - before

    def cpu_seconds(self, peer: peers.Peer) -> float | None:
        """CPU time the peer's process has used so far; None for ``direct``."""
        return None if peer.pid is None else cpu_seconds(peer.pid)

    def peak_rss_kib(self, peer: peers.Peer) -> int | None:
        """Peak resident memory of the peer's process; None for ``direct``."""
        return None if peer.pid is None else peak_rss_kib(peer.pid)

    def check_alive(self, peer: peers.Peer) -> None:
        """Fail clearly if a peer died during a run instead of measuring a corpse."""
        if peer.process is not None and peer.process.popen.poll() is not None:
            raise peers.PeerFailed(
                f"{peer.name} exited with code {peer.process.popen.returncode} during the "
                f"run; last lines of its log:\n{peer.process.log_tail()}"
            )


@contextlib.contextmanager
def open_harness(
    results_dir: Path, pin: bool = True, peer_names: Sequence[str] = peers.PEER_NAMES
) -> Iterator[Harness]:
    """A :class:`Harness` whose temp dir and processes are gone when the block exits."""
    with (
        tempfile.TemporaryDirectory(prefix="tulle-bench-") as tmp,
        process_group(Path(tmp)) as group,
    ):
        yield Harness(
            workdir=Path(tmp),
            group=group,
            pinning=Pinning.choose(pin),
            results_dir=results_dir,
            peer_names=tuple(peer_names),
        )

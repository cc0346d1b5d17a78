"""Process bookkeeping: nothing the bench starts survives it; /proc readings are sane."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.processes import (
    Pinning,
    cpu_seconds,
    free_ports,
    machine_busy_seconds,
    peak_rss_kib,
    process_group,
)

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
)


def test_group_stops_everything_even_on_an_exception(tmp_path: Path) -> None:
    pids = []
    try:
        with process_group(tmp_path) as group:
            pids.append(group.start("sleeper", ["sleep", "60"], None).pid)
            raise RuntimeError("scenario blew up")
    except RuntimeError:
        pass
    assert not _alive(pids[0])


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    with process_group(tmp_path) as group:
        stubborn = group.start("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], None)
        time.sleep(0.3)  # let it install its handler
        started = time.monotonic()
        group.stop(stubborn, grace=0.5)
        assert time.monotonic() - started < 5
    assert not _alive(stubborn.pid)


def test_run_is_bounded_in_time(tmp_path: Path) -> None:
    with process_group(tmp_path) as group:
        try:
            group.run(["sleep", "60"], None, timeout=0.3)
        except RuntimeError as exc:
            assert "did not finish" in str(exc)
        else:
            raise AssertionError("a command outliving its timeout must fail")


def test_pinning_applies_to_children(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    with process_group(tmp_path) as group:
        done = group.run(["grep", "Cpus_allowed_list", "/proc/self/status"], frozenset({cpu}), 10)
    assert done.stdout.decode().split()[-1] == str(cpu)


def test_pinning_choice_describes_itself() -> None:
    assert "not pinned" in Pinning.choose(enabled=False).describe()
    chosen = Pinning.choose()
    if len(os.sched_getaffinity(0)) >= 2:
        assert chosen.proxy and chosen.others and not chosen.proxy & chosen.others


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5


def test_proc_readings_of_this_process() -> None:
    sum(range(2_000_000))  # burn a little CPU
    assert cpu_seconds(os.getpid()) > 0
    assert peak_rss_kib(os.getpid()) > 1024


def test_machine_busy_time_counts_our_own_work() -> None:
    before, spent = machine_busy_seconds(), cpu_seconds(os.getpid())
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # busy for 0.3 s of one CPU
        pass
    spent = cpu_seconds(os.getpid()) - spent
    # The machine's busy time includes ours (clock ticks: 10 ms granularity each side).
    assert machine_busy_seconds() - before >= spent - 0.03
    assert spent > 0.1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (reaped by Popen.wait in stop()).
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"

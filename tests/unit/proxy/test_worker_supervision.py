"""The supervisor's pure parts (`tulle.proxy.workers`, `tulle.proxy.worker_channel`):
the restart backoff, a worker's command line, the ready report, the slot's moves and
``--workers auto``. The processes themselves are in tests/integration/test_workers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tulle.http import LocalProtocolError
from tulle.proxy.worker_channel import WorkerReady
from tulle.proxy.workers import (
    EMPTY,
    EXITED,
    REPORTED,
    SERVING,
    SLOT,
    START,
    STOP,
    STOPPED,
    STOPPING,
    WorkerCommand,
    available_cpus,
    restart_delay,
)


def test_a_worker_that_served_a_while_is_restarted_at_once_a_crash_loop_backs_off() -> None:
    assert restart_delay(0) == 0.0
    assert [restart_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert restart_delay(7) == 30.0
    assert restart_delay(10_000) == 30.0


READY = WorkerReady(pid=42, outbound="127.0.0.1:4140", inbound=None,
                    admin="127.0.0.1:39001", public_admin="[::1]:4191")


def test_the_ready_report_is_one_json_line_read_back_as_sent() -> None:
    line = READY.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert WorkerReady.decode(line) == READY


@pytest.mark.parametrize("line", [b"hello\n", b"{}\n", b'{"pid": "x"}\n', b"[1]\n"])
def test_anything_else_on_the_channel_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="not a worker's ready report"):
        WorkerReady.decode(line)


def test_worker_1_gets_the_options_as_given_the_others_the_addresses_it_bound() -> None:
    command = WorkerCommand((("--filename", "m"), ("--outbound", "127.0.0.1:0"),
                             ("--allow-tap", None)))
    first = command.argv(1, 7, None)
    assert first[:4] == [sys.executable, "-m", "tulle", "proxy"]
    assert first[4:] == ["--filename", "m", "--outbound", "127.0.0.1:0", "--allow-tap",
                         "--worker-index", "1", "--worker-channel", "7"]
    later = command.argv(2, 9, READY)
    assert later[4:] == ["--filename", "m", "--outbound", "127.0.0.1:4140", "--allow-tap",
                         "--inbound", "off", "--admin", "[::1]:4191",
                         "--worker-index", "2", "--worker-channel", "9"]


def test_a_slot_moves_only_as_its_table_says() -> None:
    state = SLOT.move(EMPTY, START)
    state = SLOT.move(state, REPORTED)
    assert state == SERVING
    assert SLOT.move(state, EXITED) == EMPTY
    assert SLOT.move(SLOT.move(state, STOP), EXITED) == STOPPED
    assert SLOT.move(SLOT.move(state, STOP), REPORTED) == STOPPING
    assert SLOT.move(EMPTY, STOP) == STOPPED
    with pytest.raises(LocalProtocolError):
        SLOT.move(SERVING, START)  # one worker per slot at a time
    with pytest.raises(LocalProtocolError):
        SLOT.move(STOPPED, START)  # nothing starts once stopping began


def test_auto_is_the_cpus_this_process_may_use_lowered_by_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(cpu_max) == affinity  # no such file: no quota
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one worker
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{150000 * affinity} 100000\n")  # more quota than CPUs
    assert available_cpus(cpu_max) == affinity

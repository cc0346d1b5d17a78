"""``tulle demo`` end to end on loopback: it runs, it shows traffic, it leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tulle.demo.service import ServiceProfile, start_service
from tulle.demo.traffic import TrafficGenerator

TULLE = [str(Path(sys.executable).parent / "tulle")]
if not Path(TULLE[0]).exists():
    TULLE = [sys.executable, "-c", "from tulle.cli.main import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_run(length: int = 3) -> int:
    """The first of ``length`` consecutive free ports."""
    rng = random.Random()
    for _ in range(200):  # bounded: a busy machine still has plenty of free runs
        base = rng.randrange(20_000, 60_000)
        if all(is_free(base + offset) for offset in range(length)):
            return base
    raise RuntimeError("no run of free ports found")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def run_demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("HTTP_PROXY", None)
    return subprocess.run(
        [*TULLE, "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_demo_runs_shows_traffic_and_leaves_nothing_behind() -> None:
    outbound, admin, base = free_port(), free_port(), free_port_run()
    admin_address = f"127.0.0.1:{admin}"
    started = time.monotonic()
    result = run_demo(
        "--duration", "4",
        "--outbound", f"127.0.0.1:{outbound}",
        "--admin", admin_address,
        "--service-port-base", str(base),
        "--rps", "50",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"curl -H 'Host: web' http://127.0.0.1:{outbound}/" in out
    assert f"http_proxy=http://127.0.0.1:{outbound} curl http://web/" in out
    assert "tulle tap --admin" in out
    assert f"http://{admin_address}/metrics" in out

    summary = out[out.index("summary over") :]
    for port in (base, base + 1, base + 2):
        row = next(line for line in summary.splitlines() if f"127.0.0.1:{port}" in line)
        cells = [cell.strip() for cell in row.split("|")]
        rps = float(cells[3])
        assert rps > 0, row
    total = next(line for line in summary.splitlines() if "| total" in line)
    total_rps = float([cell.strip() for cell in total.split("|")][3])
    assert 20 <= total_rps <= 60, total  # 50 rps asked for; leave room for a slow CI box
    assert re.search(r"\d+\.\d\d%", total)
    assert elapsed < 60

    # Nothing left: no process carries our admin address, every port is free again.
    deadline = time.monotonic() + 5
    while processes_mentioning(admin_address) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(admin_address) == []
    for port in (outbound, admin, base, base + 1, base + 2):
        assert is_free(port), port


def test_a_port_in_use_is_a_clear_error_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo(
            "--duration", "1",
            "--outbound", f"127.0.0.1:{port}",
            "--admin", f"127.0.0.1:{free_port()}",
            "--service-port-base", str(free_port_run()),
            timeout=30,
        )
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "--outbound" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_service_port_in_use_names_the_base_flag() -> None:
    base = free_port_run()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        result = run_demo(
            "--duration", "1",
            "--outbound", f"127.0.0.1:{free_port()}",
            "--admin", f"127.0.0.1:{free_port()}",
            "--service-port-base", str(base),
            timeout=30,
        )
    assert result.returncode != 0
    assert f"port {base + 1}" in result.stderr
    assert "--service-port-base" in result.stderr


async def test_traffic_generator_keeps_its_rate() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await start_service(
        ServiceProfile("web-3", latency=0.002, failure_rate=0.5), sock, seed=1
    )
    try:
        generator = TrafficGenerator("127.0.0.1", port, "web", rps=100)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        await asyncio.wait_for(generator.run(stop), 5)
    finally:
        server.close()
    stats = generator.stats
    assert 90 <= stats.sent <= 102
    assert stats.ok + stats.failed == stats.sent
    assert stats.failed > 0 and stats.ok > 0
    assert stats.errors == 0 and stats.skipped == 0

"""Running a real ``tulle proxy`` as the demo's child process.

The demo shows the proxy users will run, so it starts the ``tulle`` command
itself rather than an in-process copy. The child gets its own process group
(so the user's Ctrl-C reaches the demo, which then stops the proxy in order,
and so a signal to the group reaches any workers the proxy forks), and on
Linux a parent-death signal, so that even a ``kill -9`` of the demo does not
leave a proxy behind. Stopping is SIGTERM (the proxy drains and exits 0), then
SIGKILL if it has not gone after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tulle.telemetry.scrape import fetch_metrics_async

__all__ = ["ProxyProcess", "ProxyStartError", "proxy_command"]

# The proxy drains in-flight requests on SIGTERM; give it this long before SIGKILL.
STOP_GRACE_SECONDS = 10.0
# A cold start imports the proxy and reads one manifest; this is generous.
READY_TIMEOUT_SECONDS = 20.0
READY_POLL_SECONDS = 0.1


class ProxyStartError(Exception):
    """The proxy exited or never became ready; the message carries its log tail."""


def proxy_command() -> list[str]:
    """The ``tulle`` console script next to this interpreter, else the same via ``-c``."""
    script = Path(sys.executable).parent / "tulle"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tulle.cli.main import main; main()"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to the child if we die.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class ProxyProcess:
    """One ``tulle proxy`` child, its log file, and how to stop it for good."""

    def __init__(self, args: Sequence[str], log_path: Path, admin: str) -> None:
        self.args = [*proxy_command(), *args]
        self.log_path = log_path
        self.admin = admin
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def exited(self) -> int | None:
        """The exit code if the proxy has exited, else None.

        Looks without reaping (WNOWAIT): while the exited proxy is an unreaped
        zombie its process-group id cannot be reused, so signalling the group
        afterwards can only reach the proxy's own stragglers.
        """
        process = self._process
        if process is None:
            return None
        if process.returncode is not None:
            return process.returncode
        try:
            info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return process.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Return once ``GET /ready`` on the admin port answers 200."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:  # bounded by the deadline
            code = self.exited()
            if code is not None:
                raise ProxyStartError(
                    f"the proxy exited with code {code} before it was ready:\n{self.log_tail()}"
                )
            try:
                await fetch_metrics_async(self.admin, timeout=1.0, path="/ready")
                return
            except (OSError, TimeoutError) as error:
                last_error = str(error) or type(error).__name__
            await asyncio.sleep(READY_POLL_SECONDS)
        raise ProxyStartError(
            f"the proxy was not ready after {timeout:.0f} s ({last_error}):\n{self.log_tail()}"
        )

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the proxy's group, wait (serving the loop), SIGKILL if needed.

        Async so that the demo's in-process services keep answering while the
        proxy drains the requests it still has in flight.
        """
        if self._process is None:
            return None
        if self.exited() is None:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.exited() is None and time.monotonic() < deadline:  # bounded
                await asyncio.sleep(0.05)
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL whatever is left of the proxy's group and reap it (blocking, short).

        Safe to call more than once and from ``atexit``.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        # The leader is alive or an unreaped zombie: its group id is still ours.
        self._signal_group(signal.SIGKILL)
        try:
            return process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            return None

    def _signal_group(self, signum: int) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

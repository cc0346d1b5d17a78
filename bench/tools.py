"""Find the external programs the bench drives, and record their versions.

The proxies and load generators are system packages (``scripts/install-system-deps.sh``
installs them); nginx and HAProxy live in ``/usr/sbin``, which is often not on a
normal user's PATH, so that is searched too. Tulle is the ``tulle`` script of the
interpreter running the bench, so the bench measures the code in this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ToolMissing(RuntimeError):
    """A program a scenario needs is not installed."""


def find_tool(name: str) -> str:
    """Absolute path of ``name``; raises :class:`ToolMissing` if it is not installed."""
    if name == "tulle":
        beside = Path(sys.executable).with_name("tulle")
        if beside.exists():
            return str(beside)
    path = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_DIRS])
    found = shutil.which(name, path=path)
    if found is None:
        hint = "pip install -e ." if name == "tulle" else "make system-deps"
        raise ToolMissing(f"{name} not found (on PATH or in /usr/sbin); try `{hint}`")
    return found


def missing_tools(names: list[str]) -> list[str]:
    """Those of ``names`` that are not installed."""
    missing = []
    for name in names:
        try:
            find_tool(name)
        except ToolMissing:
            missing.append(name)
    return missing


def tool_version(name: str) -> str:
    """One line naming the installed version of ``name`` (best effort, never raises)."""
    try:
        path = find_tool(name)
    except ToolMissing:
        return "not installed"
    if name == "hey":  # hey has no --version; ask the package manager instead.
        return _first_line(["dpkg-query", "-W", "-f", "hey ${Version}", "hey"]) or "unknown"
    argv = {
        "haproxy": [path, "-v"],
        "nginx": [path, "-v"],
        "wrk": [path, "-v"],
        "tulle": [path, "--version"],
    }.get(name, [path, "--version"])
    return _first_line(argv) or "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # nginx prints its version on stderr; wrk prints it and then exits 1.
    text = (done.stdout or done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0].strip() if text else ""

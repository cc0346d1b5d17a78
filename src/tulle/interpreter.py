"""This Python, started again: for the proxy process (`tulle.proxy.process`) and the
configuration checker (`tulle.config.checker`).

On Linux the program is ``/proc/self/exe``, the binary already running: a proxy
dropped to a user who may not traverse the path to its interpreter (a pyenv install
under ``/root``, run as the sidecar's uid) can still start it that way. Python finds
its virtual environment from ``argv[0]``, so `exec_argv` keeps ``sys.executable``
there; where the spawning API cannot set ``argv[0]`` (asyncio's, under uvloop),
`environment` hands the child this process's module path instead.
"""

from __future__ import annotations

import os
import sys

_RUNNING = "/proc/self/exe"


def program() -> str:
    """The file to execute to start this Python again."""
    return _RUNNING if os.path.exists(_RUNNING) else sys.executable


def exec_argv(*args: str) -> list[str]:
    """The argument vector for ``os.execv(program(), ...)`` with ``args``."""
    return [sys.executable, *args]


def environment() -> dict[str, str]:
    """The environment for a child started as ``program()`` whose ``argv[0]`` is that
    program: it imports what this process imports, from the same places."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}

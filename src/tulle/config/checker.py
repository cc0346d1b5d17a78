"""Manifests checked in a short-lived process of their own, handed back as records.

A proxy never imports pydantic: its schema models and their validators are about
half of an idle proxy's memory (docs/benchmarks.md, "Memory"). So a proxy started on
manifests (`tulle proxy -f`) has them loaded and checked by ``python -m
tulle.config.checker PATH``, a child that lives for one check. The child writes back,
pickled, the checked `Config` with every schema model turned into its record
(`tulle.config.records`), or the problems found, or the error that stopped it reading
the folder. The proxy rebuilds the same `ConfigError` or `OSError` a check in its own
process would have raised, so every caller sees one behaviour.

The pickle crosses a pipe between a parent and the child it started from its own
installation; it is never read from anywhere else.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tulle import interpreter
from tulle.config.model import Config
from tulle.config.problems import ConfigError, Problem

Outcome = Config | ConfigError | OSError  # what checking manifests came to


class CheckInChild:
    """Checks manifests in a child process (``python -m tulle.config.checker``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._running: set[asyncio.Task[None]] = set()

    def check(self, path: Path, done: Callable[[Outcome], None]) -> None:
        """Check the manifests at ``path``; ``done`` gets the outcome later."""
        task = self._loop.create_task(self._check(path, done))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def cancel(self) -> None:
        for task in list(self._running):
            task.cancel()

    async def _check(self, path: Path, done: Callable[[Outcome], None]) -> None:
        done(await check_in_child(path))


async def check_in_child(path: Path) -> Outcome:
    """The outcome of checking the manifests at ``path`` in a child process."""
    child = await asyncio.create_subprocess_exec(
        interpreter.program(), "-m", "tulle.config.checker", str(path),
        env=interpreter.environment(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await child.communicate()
    except asyncio.CancelledError:
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    try:
        kind, payload = pickle.loads(out)
    except Exception:  # the child died before answering (killed, out of memory, a bug)
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return ConfigError([Problem(file=path, message=(
            f"the configuration checker stopped (exit status {child.returncode}): "
            f"{last[0]}"))])
    return _outcome(kind, payload)


def _outcome(kind: str, payload: Any) -> Outcome:
    if kind == "config":
        assert isinstance(payload, Config)
        return payload
    if kind == "problems":
        return ConfigError(payload)
    errno, strerror, filename = payload
    return OSError(errno, strerror, filename)


def _answer(path: Path) -> tuple[str, Any]:
    """What the child writes back for the manifests at ``path``."""
    from tulle.config.loading import load
    from tulle.config.records import as_records

    try:
        return "config", as_records(load(path))
    except ConfigError as exc:
        return "problems", exc.problems
    except OSError as exc:
        return "os-error", (exc.errno, exc.strerror, exc.filename)


def main(argv: list[str]) -> int:
    [path] = argv
    sys.stdout.buffer.write(pickle.dumps(_answer(Path(path)), protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

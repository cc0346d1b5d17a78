"""Manifests on disk as a discovery source: notices when the files change.

Polls the modification times and sizes of the YAML files under a path (a
file or a folder) about once a second. Polling is what works the same on
every filesystem, editors' atomic renames and Kubernetes ConfigMap symlink
swaps included, and one ``stat`` per file per second costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL = 1.0

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """(name, mtime, size) of every manifest file under ``path``."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    else:
        files = [path]
    marks = []
    for file in files:
        with contextlib.suppress(OSError):
            stat = file.stat()
            marks.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


class ManifestWatcher:
    """Calls ``on_change`` when the manifests under ``path`` change."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        path: Path,
        on_change: Callable[[], None],
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._loop = loop
        self._path = path
        self._on_change = on_change
        self._interval = interval
        self._seen = fingerprint(path)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._poll)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def mark_seen(self) -> None:
        """The caller has just read the files (e.g. on SIGHUP): don't report them again."""
        self._seen = fingerprint(self._path)

    def _poll(self) -> None:
        now = fingerprint(self._path)
        if now != self._seen:
            self._seen = now
            self._on_change()
        self._handle = self._loop.call_later(self._interval, self._poll)

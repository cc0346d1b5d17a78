"""Manifests on disk as a discovery source: notices when the files change.

Polls the modification times and sizes of the YAML files under a path (a
file or a folder) about once a second. Polling is what works the same on
every filesystem, editors' atomic renames and Kubernetes ConfigMap symlink
swaps included, and one ``stat`` per file per second costs nothing.

A poll that cannot read the folder (a directory deleted while it is walked, as a
ConfigMap's symlink swap does; a permission taken away) is logged, once per
distinct error, and polling goes on: the next readable state is compared with
the last one seen. The next poll is scheduled before anything else runs, so no
error in a poll or in ``on_change`` stops the watching for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("tulle.discovery")

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
        self._handle: asyncio.TimerHandle | None = None
        self._failing: str | None = None  # the error the last poll hit, if it failed
        self._seen: Fingerprint = ()
        self.mark_seen()

    def start(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._poll)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def mark_seen(self) -> None:
        """The caller has just read the files (e.g. on SIGHUP): don't report them again."""
        now = self._read()
        if now is not None:
            self._seen = now

    def _poll(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._poll)
        now = self._read()
        if now is not None and now != self._seen:
            self._seen = now
            self._on_change()

    def _read(self) -> Fingerprint | None:
        """The fingerprint now, or None (logged) when the folder cannot be read."""
        try:
            now = fingerprint(self._path)
        except OSError as exc:
            message = f"cannot read the manifests under {self._path}: {exc}"
            if message != self._failing:
                self._failing = message
                log.warning("%s; still watching", message)
            return None
        if self._failing is not None:
            self._failing = None
            log.info("the manifests under %s are readable again", self._path)
        return now

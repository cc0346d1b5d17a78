"""Where a proxy's configuration comes from: the one interface every source implements.

A source yields a first, complete `Config` (``initial``), then calls
``on_config`` with each new complete configuration as it changes, until
stopped. Sources always hand over whole snapshots, never deltas, so a proxy
that missed updates (a restart, a lost stream) is right again with the next
one. A source that cannot produce a valid configuration reports why through
``on_error`` and the proxy keeps serving the last good one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tulle.config import Config, ConfigError, load
from tulle.discovery.manifests import ManifestWatcher

OnConfig = Callable[[Config, str], None]  # (configuration, why it changed)
OnError = Callable[[str], None]


class ConfigSource(Protocol):
    async def initial(self) -> Config:
        """The first complete configuration (raises ConfigError when there is none)."""

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        """Begin reporting changes."""

    def refresh(self, reason: str) -> None:
        """Re-read now (SIGHUP)."""

    def stop(self) -> None:
        """Stop reporting changes."""


class ManifestSource:
    """Manifests on disk: read at start, re-read on SIGHUP and when the files change."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, watch: bool = True) -> None:
        self._loop = loop
        self._path = path
        self._watch = watch
        self._watcher: ManifestWatcher | None = None
        self._on_config: OnConfig | None = None
        self._on_error: OnError | None = None

    async def initial(self) -> Config:
        return load(self._path)

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        self._on_config = on_config
        self._on_error = on_error
        if self._watch:
            self._watcher = ManifestWatcher(
                self._loop, self._path, lambda: self.refresh("the manifests changed")
            )
            self._watcher.start()

    def refresh(self, reason: str) -> None:
        if self._watcher is not None:
            self._watcher.mark_seen()
        try:
            config = load(self._path)
        except (ConfigError, OSError) as exc:
            # OSError: the folder could not be walked (a directory deleted under
            # us); the watcher tries again on the next change.
            if self._on_error is not None:
                self._on_error(f"configuration refused ({reason}); "
                               f"still serving the previous one:\n{exc}")
            return
        if self._on_config is not None:
            self._on_config(config, reason)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

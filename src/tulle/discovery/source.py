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

from tulle.config.checker import Outcome
from tulle.config.model import Config
from tulle.config.problems import ConfigError
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


class ManifestChecker(Protocol):
    def check(self, path: Path, done: Callable[[Outcome], None]) -> None:
        """Load and check the manifests at ``path``; ``done`` gets the outcome (now or
        later)."""

    def cancel(self) -> None:
        """Give up the checks still running (their ``done`` is never called)."""


class CheckHere:
    """Checks manifests in this process, at once (the control plane, in-process proxies
    in tests). A proxy started by ``tulle proxy`` checks them in a child instead
    (`tulle.config.checker.CheckInChild`), so that it never loads pydantic."""

    def check(self, path: Path, done: Callable[[Outcome], None]) -> None:
        from tulle.config.loading import load

        try:
            config = load(path)
        except (ConfigError, OSError) as exc:
            done(exc)
            return
        done(config)

    def cancel(self) -> None:
        pass


class ManifestSource:
    """Manifests on disk: read at start, re-read on SIGHUP and when the files change.

    One check runs at a time; a change or SIGHUP during a check asks for one more
    check after it (for the latest reason), so the last state on disk is always read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, watch: bool = True,
                 checker: ManifestChecker | None = None, checked: Config | None = None) -> None:
        self._loop = loop
        self._path = path
        self._watch = watch
        self._checker = checker or CheckHere()
        self._watcher: ManifestWatcher | None = None
        self._on_config: OnConfig | None = None
        self._on_error: OnError | None = None
        self._checking = False
        self._again: str | None = None  # the reason for the check asked for during one
        self._checked_first = checked  # the first configuration, already checked

    async def initial(self) -> Config:
        if self._checked_first is not None:
            return self._checked_first
        checked: asyncio.Future[Outcome] = self._loop.create_future()
        self._checker.check(self._path, checked.set_result)
        outcome = await checked
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

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
        if self._checking:
            self._again = reason
            return
        self._checking = True
        self._checker.check(self._path, lambda outcome: self._checked(outcome, reason))

    def _checked(self, outcome: Outcome, reason: str) -> None:
        self._checking = False
        if isinstance(outcome, Exception):
            # OSError: the folder could not be walked (a directory deleted under
            # us); the watcher tries again on the next change.
            if self._on_error is not None:
                self._on_error(f"configuration refused ({reason}); "
                               f"still serving the previous one:\n{outcome}")
        elif self._on_config is not None:
            self._on_config(outcome, reason)
        if self._again is not None:
            again, self._again = self._again, None
            self.refresh(again)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._checker.cancel()
        self._checking = False
        self._again = None

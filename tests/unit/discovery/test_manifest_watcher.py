"""ManifestWatcher and ManifestSource: changes on disk are noticed, and an error reading
the folder (a ConfigMap's symlink swap deleting a directory mid-walk) is logged and
polling goes on (issue 15, #5)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_loop import FakeLoop
from tulle.config import Config
from tulle.discovery import ManifestSource, ManifestWatcher

SERVICE = (
    "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: %s}\n"
    "spec: {endpoints: [{address: '127.0.0.1:9001'}]}\n"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "web.yaml").write_text(SERVICE % "web")
    return tmp_path


class FailingWalk:
    """Makes one walk of a folder fail the way a directory deleted mid-walk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._countdown = -1
        real_rglob = Path.rglob

        def rglob(path: Path, pattern: str) -> Iterator[Path]:
            self._countdown -= 1
            if self._countdown == 0:
                raise FileNotFoundError(2, "No such file or directory", str(path / "..data"))
            return real_rglob(path, pattern)

        monkeypatch.setattr(Path, "rglob", rglob)

    def arm(self, after: int = 0) -> None:
        """Fail the walk that comes after ``after`` more successful ones."""
        self._countdown = after + 1


@pytest.fixture
def failing_walk(monkeypatch: pytest.MonkeyPatch) -> FailingWalk:
    return FailingWalk(monkeypatch)


def test_a_change_is_reported_once(folder: Path) -> None:
    loop = FakeLoop()
    changes: list[int] = []
    watcher = ManifestWatcher(loop, folder, lambda: changes.append(1))  # type: ignore[arg-type]
    watcher.start()
    loop.advance(1.0)
    assert changes == []
    (folder / "api.yaml").write_text(SERVICE % "api")
    loop.advance(1.0)
    loop.advance(1.0)
    assert changes == [1]


def test_the_watcher_keeps_polling_after_an_oserror_and_logs_it(
    folder: Path, failing_walk: FailingWalk, caplog: pytest.LogCaptureFixture
) -> None:
    loop = FakeLoop()
    changes: list[int] = []
    watcher = ManifestWatcher(loop, folder, lambda: changes.append(1))  # type: ignore[arg-type]
    watcher.start()
    failing_walk.arm()
    with caplog.at_level(logging.WARNING, logger="tulle.discovery"):
        loop.advance(1.0)  # this poll's walk fails
    assert "..data" in caplog.text
    assert len(loop.pending_timers) == 1, "the next poll is still scheduled"
    (folder / "api.yaml").write_text(SERVICE % "api")
    loop.advance(1.0)
    assert changes == [1]


def test_the_same_error_every_second_is_logged_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loop = FakeLoop()
    watcher = ManifestWatcher(loop, folder, lambda: None)  # type: ignore[arg-type]
    watcher.start()

    def broken(self: Path, pattern: str) -> Iterator[Path]:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rglob", broken)
    with caplog.at_level(logging.WARNING, logger="tulle.discovery"):
        loop.advance(10.0)
    assert caplog.text.count("Permission denied") == 1
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="tulle.discovery"):
        loop.advance(1.0)
    assert "readable again" in caplog.text


def test_a_source_whose_reload_hits_an_oserror_reports_it_and_keeps_watching(
    folder: Path, failing_walk: FailingWalk
) -> None:
    loop = FakeLoop()
    source = ManifestSource(loop, folder)  # type: ignore[arg-type]
    configs: list[Config] = []
    errors: list[str] = []
    source.start(lambda config, reason: configs.append(config), errors.append)
    # A poll walks the folder, and on a change the reload walks it twice (to mark
    # it seen, then to load it): the load's walk fails.
    failing_walk.arm(after=2)
    (folder / "api.yaml").write_text(SERVICE % "api")
    loop.advance(1.0)
    assert configs == []
    assert len(errors) == 1 and "..data" in errors[0] and "previous" in errors[0]
    (folder / "db.yaml").write_text(SERVICE % "db")
    loop.advance(1.0)
    [config] = configs
    assert set(config.services) == {"web.default", "api.default", "db.default"}
    source.stop()

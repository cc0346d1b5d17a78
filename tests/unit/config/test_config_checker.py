"""Manifests checked in a child process (`tulle.config.checker`): the proxy gets what a
check in its own process would have given, as records, and a manifest source runs one
check at a time, reading the latest state after a change made during one."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tulle import interpreter
from tulle.config import Config, ConfigError, load
from tulle.config.checker import CheckInChild, Outcome, check_in_child
from tulle.config.records import Record
from tulle.discovery import ManifestSource

SERVICE = """\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: %s}
spec: {endpoints: [{address: '127.0.0.1:9001'}]}
"""


def test_a_good_configuration_comes_back_as_records(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(SERVICE % "web")
    outcome = asyncio.run(check_in_child(tmp_path))
    assert isinstance(outcome, Config)
    assert isinstance(outcome.services["web.default"].load_balancer, Record)
    assert outcome.to_dict() == load(tmp_path).to_dict()


def test_problems_come_back_as_the_same_config_error(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(textwrap.dedent("""\
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: web}
        spec: {endpoints: [{address: '127.0.0.1:9001', weight: true}], colour: blue}
        """))
    outcome = asyncio.run(check_in_child(tmp_path))
    assert isinstance(outcome, ConfigError)
    with pytest.raises(ConfigError) as here:
        load(tmp_path)
    assert outcome.problems == here.value.problems
    assert "weight: expected an integer, got true" in str(outcome)


def test_a_checker_that_dies_is_a_config_error_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interpreter, "program", lambda: "/bin/false")  # exits 1, says nothing
    outcome = asyncio.run(check_in_child(tmp_path))
    assert isinstance(outcome, ConfigError)
    assert "the configuration checker stopped (exit status 1)" in str(outcome)


def test_changes_during_a_check_are_read_by_one_more_check(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(SERVICE % "web")

    async def scenario() -> list[tuple[set[str], str]]:
        loop = asyncio.get_running_loop()
        source = ManifestSource(loop, tmp_path, watch=False, checker=CheckInChild(loop))
        seen: list[tuple[set[str], str]] = []
        done = asyncio.Event()

        def on_config(config: Config, reason: str) -> None:
            seen.append((set(config.services), reason))
            if reason == "third":
                done.set()

        source.start(on_config, lambda error: pytest.fail(error))
        source.refresh("first")
        (tmp_path / "api.yaml").write_text(SERVICE % "api")
        source.refresh("second")  # both while the first check runs: one check follows
        source.refresh("third")
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.5)  # no other check is on its way
        source.stop()
        return seen

    # (The first check may or may not have read api.yaml: its child reads the folder
    # some time after it starts.)
    first, last = asyncio.run(scenario())
    assert first[1] == "first" and "web.default" in first[0]
    assert last == ({"web.default", "api.default"}, "third")


def test_a_stopped_source_kills_its_check(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(SERVICE % "web")

    async def scenario() -> list[Outcome]:
        loop = asyncio.get_running_loop()
        checker = CheckInChild(loop)
        outcomes: list[Outcome] = []
        checker.check(tmp_path, outcomes.append)
        await asyncio.sleep(0.05)
        checker.cancel()
        await asyncio.sleep(1.0)
        return outcomes

    assert asyncio.run(scenario()) == []

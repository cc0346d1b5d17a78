"""``tulle inject``: golden files for every workload kind, idempotence, opting out.

Each file in golden/in/ is injected with the chart's default values and compared with
golden/out/ (TULLE_UPDATE_GOLDEN=1 rewrites them; review the diff). The webhook adds
the same containers to Pods created in the real cluster (tests/k8s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tulle.cli.inject import inject
from tulle.kube.inject import INIT_CONTAINER, PROXY_CONTAINER, InjectConfig, inject_object

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(path.name for path in (GOLDEN / "in").glob("*.yaml"))


def _run(path: Path | None, stdin: str | None = None) -> str:
    result = CliRunner().invoke(inject, [str(path) if path else "-"], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    output = _run(GOLDEN / "in" / name)
    expected = GOLDEN / "out" / name
    if os.environ.get("TULLE_UPDATE_GOLDEN") == "1":
        expected.write_text(output)
    assert output == expected.read_text()


@pytest.mark.parametrize("name", CASES)
def test_injecting_twice_changes_nothing(name: str) -> None:
    once = _run(GOLDEN / "in" / name)
    assert _run(None, stdin=once) == once


def test_every_workload_kind_gets_both_containers() -> None:
    kinds = set()
    for name in CASES:
        for document in yaml.safe_load_all((GOLDEN / "out" / name).read_text()):
            items = document.get("items", [document])
            for item in items:
                spec = _pod_spec(item)
                if spec is None or item["metadata"]["name"] == "legacy":
                    continue
                kinds.add(item["kind"])
                assert spec["containers"][0]["name"] == PROXY_CONTAINER
                assert spec["initContainers"][0]["name"] == INIT_CONTAINER
    assert kinds == {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def test_annotations_reach_the_containers() -> None:
    config = InjectConfig.from_chart()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
        "tulle.dev/opaque-ports": "5432", "tulle.dev/skip-inbound-ports": "22",
        "tulle.dev/proxy-cpu-limit": "2"}}, "spec": {"containers": [{"name": "a"}]}}
    spec = inject_object(pod, config)["spec"]
    init_args = spec["initContainers"][0]["args"]
    assert "--skip-inbound-ports=4190,4191,22" in init_args
    assert "--skip-outbound-ports=53" in init_args  # opaque ports are captured
    # ... and proxied as opaque TCP; the annotation replaces the chart's list.
    assert "--opaque-ports=5432" in spec["containers"][0]["args"]
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "128Mi", "cpu": "2"}
    assert pod["spec"]["containers"] == [{"name": "a"}]  # the input is not changed


def test_a_stream_that_is_not_yaml_is_refused() -> None:
    result = CliRunner().invoke(inject, ["-"], input="kind: [unclosed\n")
    assert result.exit_code == 1 and "not YAML" in result.output


def _pod_spec(item: dict) -> dict | None:
    kind = item.get("kind")
    if kind == "Pod":
        return item["spec"]
    if kind == "CronJob":
        return item["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return item["spec"]["template"]["spec"]
    return None

"""The workload an injected proxy reads from its pod: downward API labels, named ports,
probes, namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tulle.policy.workload import read_labels, workload_from


def test_from_the_pod(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    # The downward API writes each label as key="value", the value quoted as Go's %q.
    labels.write_text('app="web"\npod-template-hash="5d6f"\n'
                      'tulle.dev/note="a \\"quoted\\" value"\n')
    assert read_labels(labels) == {"app": "web", "pod-template-hash": "5d6f",
                                   "tulle.dev/note": 'a "quoted" value'}
    workload = workload_from({"TULLE_WORKLOAD_NAMESPACE": "shop",
                              "TULLE_WORKLOAD_PORTS": "http=8080,admin=9090,bad=x",
                              "TULLE_PROBES": "8080:/healthz,9090:/ready,oops"}, labels)
    assert workload is not None
    assert workload.namespace == "shop" and workload.labels["app"] == "web"
    assert workload.ports == {"http": 8080, "admin": 9090}
    assert [(p.port, p.path) for p in workload.probes] == [(8080, "/healthz"), (9090, "/ready")]


def test_nothing_said() -> None:
    assert workload_from({}, None) is None


def test_a_namespace_that_is_no_namespace_name_is_refused() -> None:
    with pytest.raises(ValueError, match="TULLE_WORKLOAD_NAMESPACE: expected a namespace"):
        workload_from({"TULLE_WORKLOAD_NAMESPACE": "Shop_1"}, None)


def test_ports_out_of_range_are_left_out() -> None:
    workload = workload_from({"TULLE_WORKLOAD_NAMESPACE": "shop",
                              "TULLE_WORKLOAD_PORTS": "http=0,admin=70000,ok=80",
                              "TULLE_PROBES": "0:/healthz,70000:/ready,80:/live"}, None)
    assert workload is not None
    assert workload.ports == {"ok": 80}
    assert [(p.port, p.path) for p in workload.probes] == [(80, "/live")]

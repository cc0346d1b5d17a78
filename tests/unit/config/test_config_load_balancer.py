"""The loadBalancer settings: defaults, every algorithm by name, and errors that name
the file, document and field and list the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_testkit import load_text, problems

from tulle.config import LOAD_BALANCER_ALGORITHMS

SERVICE = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: web}}
spec:
  endpoints:
    - {{address: "127.0.0.1:9001"}}
  loadBalancer: {lb}
"""

MESH_AND_SERVICE = """
apiVersion: tulle.dev/v1alpha1
kind: ServiceMesh
metadata: {{name: default}}
spec:
  defaults:
    loadBalancer: {lb}
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: web}}
spec:
  endpoints:
    - {{address: "127.0.0.1:9001"}}
  loadBalancer: {service_lb}
"""

CHOICES = ", ".join(LOAD_BALANCER_ALGORITHMS[:-1]) + f" or {LOAD_BALANCER_ALGORITHMS[-1]}"
WHERE = 'document 1 (MeshService "web"): spec.loadBalancer'


def test_default_is_expected_latency_with_linkerds_settings(tmp_path: Path) -> None:
    web = load_text(tmp_path, SERVICE.format(lb="{}")).services["web.default"]
    lb = web.load_balancer
    assert (lb.algorithm, lb.decay, lb.default_rtt) == ("expected-latency", 10.0, 0.030)
    assert lb.slow_start is None and lb.zone_aware and lb.hash_on is None


@pytest.mark.parametrize("algorithm", LOAD_BALANCER_ALGORITHMS)
def test_every_algorithm_loads_by_name(tmp_path: Path, algorithm: str) -> None:
    config = load_text(tmp_path, SERVICE.format(lb=f"{{algorithm: {algorithm}}}"))
    assert config.services["web.default"].load_balancer.algorithm == algorithm


def test_full_ring_hash_settings(tmp_path: Path) -> None:
    lb = load_text(tmp_path, SERVICE.format(
        lb="{algorithm: ring-hash, hashOn: {cookie: Session}, hashBalanceFactor: 150, "
           "slowStart: {window: 1m}, zoneAware: false}"
    )).services["web.default"].load_balancer
    assert lb.hash_on is not None and lb.hash_on.cookie == "session"
    assert (lb.hash_balance_factor, lb.slow_start and lb.slow_start.window, lb.zone_aware) == (
        150, 60.0, False
    )


def test_service_settings_lay_over_the_mesh_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, MESH_AND_SERVICE.format(
        lb="{algorithm: ring-hash, hashOn: {header: x-user}}",
        service_lb="{slowStart: {}}",
    ))
    lb = config.services["web.default"].load_balancer
    assert lb.algorithm == "ring-hash" and lb.hash_on and lb.hash_on.header == "x-user"
    assert lb.slow_start is not None and lb.slow_start.window == 30.0


@pytest.mark.parametrize(("lb", "message"), [
    ("{algorithm: fastest}", f'.algorithm: expected one of {CHOICES}, got "fastest"'),
    ("{algorithm: ring-hash, hashOn: {}}",
     ".hashOn: expected exactly one of header: <name>, cookie: <name> or clientAddress: "
     "true, got 0"),
    ("{algorithm: ring-hash, hashOn: {header: a, cookie: b}}",
     ".hashOn: expected exactly one of header: <name>, cookie: <name> or clientAddress: "
     "true, got 2"),
    ("{algorithm: ring-hash, hashOn: {header: 'bad header'}}",
     '.hashOn.header: expected an HTTP header or cookie name, got "bad header"'),
    ("{algorithm: round-robin, hashOn: {header: x-user}}",
     ": hashOn does not apply to algorithm round-robin"),
    ("{algorithm: random, decay: 5s}", ": decay does not apply to algorithm random"),
    ("{algorithm: ring-hash, hashBalanceFactor: 90}", ".hashBalanceFactor: "),
    ("{slowStart: {window: 0s}}", ".slowStart.window: expected a duration greater than zero"),
    ("{defaultRtt: 30}", ".defaultRtt: expected a duration"),
    ("{zoneAware: maybe}", ".zoneAware: "),
    ("{algorithm: peak-ewma, ewma: 1}", ".ewma: unknown field"),
])  # fmt: skip
def test_bad_settings_are_errors_with_the_field_path(tmp_path: Path, lb: str,
                                                     message: str) -> None:
    (line,) = problems(tmp_path, SERVICE.format(lb=lb))
    assert line.startswith(WHERE + message), line


def test_mesh_default_errors_name_the_mesh_document(tmp_path: Path) -> None:
    lines = problems(tmp_path, MESH_AND_SERVICE.format(lb="{algorithm: nope}", service_lb="{}"))
    assert lines == [
        'document 1 (ServiceMesh "default"): spec.defaults.loadBalancer.algorithm: expected '
        f'one of {CHOICES}, got "nope"'
    ]

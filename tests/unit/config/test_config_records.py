"""Records: a checked configuration as a proxy process reads it, without pydantic. A
record reads, compares, pickles and renders as its model did, and has its methods."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tulle.config import Address, load
from tulle.config.records import Record, as_records, dump, with_changes

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

POLICY = """
apiVersion: tulle.dev/v1alpha1
kind: ServiceMesh
metadata: {name: mesh}
spec:
  proxy:
    workload: {namespace: shop, labels: {app: web}, ports: {http: 8080}}
  egress: {allow: [{host: "*.example.com", ports: [443]}]}
  defaults:
    retries: {budget: {ratio: 0.1}}
    limits: {pendingRequests: 5}
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web, namespace: shop}
spec:
  endpoints: [{address: "127.0.0.1:9001"}]
  timeouts: {request: 2s, perTry: 500ms}
  loadBalancer: {algorithm: peak-ewma}
  retries: {attempts: 3}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: web}]
  rules:
    - matches:
        - path: {type: RegularExpression, value: "^/api/v[0-9]+"}
          headers: [{type: RegularExpression, name: x-user, value: "a.*"}]
      backendRefs: [{name: web}]
      retry: {attempts: 2}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: NotIn, values: [db]}]
  port: http
---
apiVersion: policy.tulle.dev/v1alpha1
kind: NetworkAuthentication
metadata: {name: pods, namespace: shop}
spec: {networks: [{cidr: 10.0.0.0/8}]}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-pods, namespace: shop}
spec:
  targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{kind: NetworkAuthentication, name: pods}]
"""


@pytest.fixture
def policy_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(textwrap.dedent(POLICY))
    return path


def test_every_model_becomes_a_record_that_renders_as_it_did(policy_manifest: Path) -> None:
    for source in (EXAMPLES, policy_manifest):
        config = load(source, environ={})
        records = as_records(config)
        assert records.to_dict() == config.to_dict()
        service = next(iter(records.services.values()))
        assert isinstance(service.load_balancer, Record)
        assert isinstance(records.mesh.defaults.timeouts, Record)
        assert not any(hasattr(type(item), "model_fields") for item in records.policy)


def test_records_read_compare_and_pickle_like_their_models(policy_manifest: Path) -> None:
    config = load(policy_manifest, environ={})
    records = as_records(config)
    web, record = config.services["web.shop"], records.services["web.shop"]
    assert (record.timeouts.request, record.timeouts.per_try) == (2.0, 0.5)
    assert record.retries is not None and record.retries.attempts == 3
    assert record.limits.pending_requests == 5
    assert record.load_balancer.algorithm == web.load_balancer.algorithm == "peak-ewma"
    assert record.load_balancer == as_records(web.load_balancer)
    assert hash(record.load_balancer) == hash(as_records(web.load_balancer))
    assert record.load_balancer != record.timeouts
    again = pickle.loads(pickle.dumps(records))
    assert again.to_dict() == config.to_dict()
    assert again.services["web.shop"] == record
    assert type(again.services["web.shop"].load_balancer) is type(record.load_balancer)
    with pytest.raises(AttributeError, match="frozen"):
        record.timeouts.request = 1.0  # type: ignore[misc]


def test_records_have_their_models_methods(policy_manifest: Path) -> None:
    records = as_records(load(policy_manifest, environ={}))
    (route,) = records.routes
    assert (route.name, route.namespace) == ("api", "shop")
    match = route.spec.rules[0].matches[0]
    assert match.path.pattern is not None and match.path.pattern.fullmatch("/api/v2")
    assert match.headers[0].pattern is not None and match.headers[0].pattern.fullmatch("alice")
    (server,) = records.policy.servers
    assert server.spec.pod_selector.matches({"app": "web"})
    assert not server.spec.pod_selector.matches({"app": "web", "tier": "db"})
    assert not server.spec.pod_selector.matches({"app": "api"})


def test_a_changed_record_renders_its_change(policy_manifest: Path) -> None:
    config = load(policy_manifest, environ={})
    records = as_records(config)
    app = Address("127.0.0.1", 8080)
    changed = with_changes(records.mesh, proxy=with_changes(records.mesh.proxy, app=app))
    expected = with_changes(config.mesh, proxy=with_changes(config.mesh.proxy, app=app))
    assert changed.proxy.app == app
    assert dump(changed) == dump(expected)
    assert dump(changed, exclude_none=True) == dump(expected, exclude_none=True)
    assert dump(records.mesh)["proxy"]["app"] is None  # the original is unchanged
    with pytest.raises(TypeError, match="no field"):
        with_changes(records.mesh, colour="blue")


def test_a_process_can_read_records_without_pydantic(policy_manifest: Path) -> None:
    pickled = pickle.dumps(as_records(load(policy_manifest, environ={})))
    reader = ("import pickle, sys\n"
              "config = pickle.loads(sys.stdin.buffer.read())\n"
              "assert config.services['web.shop'].limits.pending_requests == 5\n"
              "config.to_dict()\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'yaml')))\n")
    result = subprocess.run([sys.executable, "-c", reader], input=pickled,
                            capture_output=True, check=True)
    assert result.stdout.strip() == b"[]"

"""The CRDs' OpenAPI schemas, made from the manifest models so that both say the same.

The API server checks a custom resource against its CRD's ``openAPIV3Schema`` and
refuses a wrong type, value or pattern with the field's path (``spec.loadBalancer.
algorithm: Unsupported value: "fastest"``). Tulle's pydantic models
(``tulle.config.schema_tulle``, ``schema_gateway``) are the definition; their JSON
Schema is turned into a *structural* schema, the form apiextensions.k8s.io/v1
requires: references inlined, every node typed, ``null`` unions as ``nullable``,
``int | str`` as ``x-kubernetes-int-or-string``, JSON Schema's numeric
``exclusiveMinimum`` as OpenAPI 3.0's boolean one, no defaults (the server would
store them; Tulle applies its own), no ``additionalProperties: false`` (structural
schemas prune unknown fields instead: an unknown field is dropped by the API server
before Tulle sees it, where Tulle itself, reading files, names it as an error).
Checks a schema cannot say (exactly one of two fields, ``minTtl <= maxTtl``) stay
Tulle's: the control plane logs such an object by name and leaves it out.

``python -m tulle.kube.crds`` rewrites deploy/helm/tulle/crds/ from the models; a test
checks the files are current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tulle.config.schema_authorization import (
    AuthorizationPolicySpec,
    HTTPLocalRateLimitPolicySpec,
    MeshTLSAuthenticationSpec,
    NetworkAuthenticationSpec,
    ServerSpec,
)
from tulle.config.schema_gateway import HTTPRouteSpec
from tulle.config.schema_tulle import MeshServiceSpec, MeshSpec

CRD_DIR = Path(__file__).resolve().parent / "chart" / "crds"
# Go's regular expressions (RE2) have no lookaround: such patterns stay Tulle's to check.
_NOT_RE2 = re.compile(r"\(\?[=!<]")
_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def structural(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node as an apiextensions structural schema node."""
    if "$ref" in schema:
        return structural({**definitions[schema["$ref"].split("/")[-1]],
                           **{k: v for k, v in schema.items() if k != "$ref"}}, definitions)
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            node = structural({**options[0], **rest}, definitions)
        elif {option.get("type") for option in options} == {"integer", "string"}:
            node = {"x-kubernetes-int-or-string": True}
        else:
            node = {"x-kubernetes-preserve-unknown-fields": True}
        if nullable:
            node["nullable"] = True
        return node
    node: dict[str, Any] = {}
    if "description" in schema:
        node["description"] = schema["description"].split("\n\n")[0].replace("\n", " ")
    kind = schema.get("type")
    values = [schema["const"]] if "const" in schema else schema.get("enum") or []
    if kind is None and values:  # a literal: its type is its values' type
        kinds = {_TYPES.get(type(value)) for value in values}
        kind = kinds.pop() if len(kinds) == 1 else None
    if kind is not None:
        node["type"] = kind
    if "const" in schema:
        node["enum"] = [schema["const"]]
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "minItems",
                "maxItems"):
        if key in schema:
            node[key] = schema[key]
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if key in schema:
            node[bound] = schema[key]
            node[key] = True
    if "pattern" in schema and not _NOT_RE2.search(schema["pattern"]):
        node["pattern"] = schema["pattern"]
    if kind == "object":
        if "properties" in schema:
            node["properties"] = {name: structural(value, definitions)
                                  for name, value in schema["properties"].items()}
            if schema.get("required"):
                node["required"] = list(schema["required"])
        elif isinstance(schema.get("additionalProperties"), dict):
            node["additionalProperties"] = structural(schema["additionalProperties"],
                                                      definitions)
        else:
            node["x-kubernetes-preserve-unknown-fields"] = True
    if kind == "array":
        node["items"] = structural(schema.get("items") or {}, definitions) \
            if schema.get("items") else {"x-kubernetes-preserve-unknown-fields": True}
    if "type" not in node and not any(key.startswith("x-kubernetes") for key in node):
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return structural(schema, schema.get("$defs", {}))


# file name -> (comment, group, kind, plural, singular, scope, version, short names, spec)
_CRDS = {
    "tulle.dev_meshservices.yaml": (
        "Tulle's MeshService: a service with its policy (and, off Kubernetes, static\n"
        "endpoints). On a cluster its endpoints come from the EndpointSlices labelled\n"
        "kubernetes.io/service-name: <name>.",
        "tulle.dev", "MeshService", "meshservices", "meshservice", "Namespaced", "v1alpha1",
        ["msvc"], MeshServiceSpec),
    "tulle.dev_servicemeshes.yaml": (
        "Tulle's ServiceMesh: mesh-wide defaults (balancer, timeouts, retry budget).\n"
        "Cluster scoped; at most one per cluster (the control plane reports any extra).",
        "tulle.dev", "ServiceMesh", "servicemeshes", "servicemesh", "Cluster", "v1alpha1",
        [], MeshSpec),
    "gateway.networking.k8s.io_httproutes.yaml": (
        "A minimal stand-in for Gateway API's HTTPRoute CRD, with the fields Tulle reads,\n"
        "for clusters (and tests) without Gateway API. Where the upstream Gateway API\n"
        "CRDs are installed, keep those: Tulle reads v1 (or v1beta1) HTTPRoutes either way.",
        "gateway.networking.k8s.io", "HTTPRoute", "httproutes", "httproute", "Namespaced",
        "v1", [], HTTPRouteSpec),
    "policy.tulle.dev_servers.yaml": (
        "Inbound policy: a port on the pods a selector picks (Linkerd's Server).",
        "policy.tulle.dev", "Server", "servers", "server", "Namespaced", "v1alpha1",
        ["srv"], ServerSpec),
    "policy.tulle.dev_authorizationpolicies.yaml": (
        "Inbound policy: traffic to a Server, an HTTPRoute or a namespace is allowed when\n"
        "every required authentication holds (Linkerd's AuthorizationPolicy).",
        "policy.tulle.dev", "AuthorizationPolicy", "authorizationpolicies",
        "authorizationpolicy", "Namespaced", "v1alpha1", ["authzpolicy"],
        AuthorizationPolicySpec),
    "policy.tulle.dev_meshtlsauthentications.yaml": (
        "Inbound policy: clients over mutual TLS with one of these identities\n"
        "(Linkerd's MeshTLSAuthentication).",
        "policy.tulle.dev", "MeshTLSAuthentication", "meshtlsauthentications",
        "meshtlsauthentication", "Namespaced", "v1alpha1", ["meshtlsauthn"],
        MeshTLSAuthenticationSpec),
    "policy.tulle.dev_networkauthentications.yaml": (
        "Inbound policy: clients whose address is in these networks\n"
        "(Linkerd's NetworkAuthentication).",
        "policy.tulle.dev", "NetworkAuthentication", "networkauthentications",
        "networkauthentication", "Namespaced", "v1alpha1", ["netauthn"],
        NetworkAuthenticationSpec),
    "policy.tulle.dev_httplocalratelimitpolicies.yaml": (
        "Inbound policy: a local rate limit on a Server's HTTP requests, in total, per\n"
        "client identity and for named clients (Linkerd's HTTPLocalRateLimitPolicy).",
        "policy.tulle.dev", "HTTPLocalRateLimitPolicy", "httplocalratelimitpolicies",
        "httplocalratelimitpolicy", "Namespaced", "v1alpha1", [],
        HTTPLocalRateLimitPolicySpec),
}


def crd_files() -> dict[str, str]:
    """Every CRD file's text, as generated from the models."""
    files = {}
    for name, (comment, group, kind, plural, singular, scope, version, short, spec) in \
            _CRDS.items():
        metadata: dict[str, Any] = {"name": f"{plural}.{group}"}
        if group.endswith(".k8s.io"):  # *.k8s.io groups need this; "unapproved": not upstream
            metadata["annotations"] = {"api-approved.kubernetes.io":
                                       "unapproved, minimal stand-in for the Gateway API CRD"}
        names: dict[str, Any] = {"plural": plural, "singular": singular, "kind": kind}
        if short:
            names["shortNames"] = short
        document = {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": metadata,
            "spec": {"group": group, "scope": scope, "names": names, "versions": [{
                "name": version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec_schema(spec),
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }}},
            }]},
        }
        header = "".join(f"# {line}\n" for line in comment.splitlines())
        header += "# Generated from Tulle's manifest models by `python -m tulle.kube.crds`.\n"
        files[name] = header + yaml.safe_dump(document, sort_keys=False, width=100)
    return files


def main() -> None:
    for name, text in crd_files().items():
        (CRD_DIR / name).write_text(text)
        print(f"wrote {CRD_DIR / name}", file=sys.stderr)


if __name__ == "__main__":
    main()

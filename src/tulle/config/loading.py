"""``load(path)``: read manifests from a file or folder into one checked :class:`Config`.

Loading never stops at the first mistake. Every file is read, every document is
checked against the schema of its kind, and the cross-document checks run on all
that passed; then one :class:`ConfigError` lists everything, so a user sees the
whole picture in one run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tulle.config.assemble import Checked, assemble
from tulle.config.model import Config
from tulle.config.problems import ConfigError, Problem, describe, problems_from_validation
from tulle.config.schema_authorization import POLICY_API_VERSION, POLICY_KINDS
from tulle.config.schema_gateway import GATEWAY_API_VERSION, HTTPRoute
from tulle.config.schema_kubernetes import (
    EndpointSlice,
    EndpointSliceV1Beta1,
    KubernetesService,
)
from tulle.config.schema_tulle import TULLE_API_VERSION, MeshService, ServiceMesh
from tulle.config.yaml_reader import Document, find_manifests, read_documents

# (apiVersion, kind) -> the schema a document of that kind must satisfy.
KINDS: dict[tuple[str, str], type[BaseModel]] = {
    (TULLE_API_VERSION, "ServiceMesh"): ServiceMesh,
    (TULLE_API_VERSION, "MeshService"): MeshService,
    ("v1", "Service"): KubernetesService,
    ("discovery.k8s.io/v1", "EndpointSlice"): EndpointSlice,
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): EndpointSliceV1Beta1,
    (GATEWAY_API_VERSION, "HTTPRoute"): HTTPRoute,
    **{(POLICY_API_VERSION, kind): model for kind, model in POLICY_KINDS.items()},
}


def load(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Config:
    """Load the manifests at ``path`` (a file, or a folder searched recursively).

    ``environ`` supplies ``TULLE_ZONE`` when the ServiceMesh names no zone; it defaults
    to the process environment. Raises :class:`ConfigError` listing every problem.
    """
    files, problems = find_manifests(Path(path))
    documents: list[Checked] = []
    for file in files:
        read, read_problems = read_documents(file)
        problems += read_problems
        for document in read:
            if document.content is None:  # an empty document, e.g. a trailing "---"
                continue
            manifest, document_problems = check_document(document)
            problems += document_problems
            if isinstance(document.content, dict):
                documents.append(Checked(document, manifest))
    config, cross_problems = assemble(
        documents,
        sources=tuple(files),
        environ=os.environ if environ is None else environ,
    )
    problems += cross_problems
    if problems:
        # In reading order: by file, then document; a file's own problems first.
        order = {file: position for position, file in enumerate(files)}
        problems.sort(key=lambda problem: (order.get(Path(problem.file), -1),
                                           problem.document or 0))
        raise ConfigError(problems)
    return config


def check_document(document: Document) -> tuple[BaseModel | None, list[Problem]]:
    """Check one document against the schema of its kind."""
    content = document.content
    where = {"file": document.file, "document": document.index}
    if not isinstance(content, dict):
        return None, [Problem(**where, message=(
            f"expected a mapping with apiVersion, kind, metadata and spec, got {describe(content)}"
        ))]
    kind, api_version = content.get("kind"), content.get("apiVersion")
    metadata = content.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    where |= {"kind": kind if isinstance(kind, str) else None,
              "name": name if isinstance(name, str) else None}
    schema = KINDS.get((api_version, kind)) if isinstance(api_version, str) else None
    if schema is None:
        return None, [Problem(**where, **_unknown_kind(kind, api_version))]
    try:
        return schema.model_validate(content), []
    except ValidationError as error:
        return None, problems_from_validation(error, schema, **where)


def _unknown_kind(kind: Any, api_version: Any) -> dict[str, str]:
    accepted = ", ".join(f"{version} {name}" for version, name in KINDS)
    versions = [version for version, name in KINDS if name == kind]
    if versions:
        if api_version is None:
            return {"path": "apiVersion", "message": "required field is missing"}
        return {"path": "apiVersion", "message": (
            f"expected {' or '.join(versions)} for kind {kind}, got {describe(api_version)}"
        )}
    if kind is None:
        return {"path": "kind", "message": f"required field is missing (accepted: {accepted})"}
    return {"path": "kind", "message": (
        f"expected one of the accepted kinds ({accepted}), got {describe(kind)}"
    )}

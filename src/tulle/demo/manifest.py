"""The configuration the demo hands its proxy: one ``MeshService`` with its endpoints.

Written as YAML text (not built through ``tulle.config``) because the demo is a
user of the proxy like any other: it writes the same manifest a user would, and
``docs/demo.md`` can show it verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["SERVICE_NAME", "render_manifest", "write_manifest"]

SERVICE_NAME = "web"
MANIFEST_FILE = "web.yaml"


def render_manifest(endpoints: Sequence[str], name: str = SERVICE_NAME) -> str:
    """A MeshService manifest for ``name`` with ``endpoints`` (HOST:PORT each)."""
    lines = [
        "apiVersion: tulle.dev/v1alpha1",
        "kind: MeshService",
        f"metadata: {{name: {name}}}",
        "spec:",
        "  port: 80",
        "  endpoints:",
        *(f'    - {{address: "{address}"}}' for address in endpoints),
    ]
    return "\n".join(lines) + "\n"


def write_manifest(directory: Path, endpoints: Sequence[str]) -> Path:
    """Write the demo's manifest into ``directory``; return the file's path."""
    path = directory / MANIFEST_FILE
    path.write_text(render_manifest(endpoints), encoding="utf-8")
    return path

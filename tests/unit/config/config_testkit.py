"""Helpers for the config tests: write manifests into a temporary folder, load them,
and get the problems back as lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tulle.config import Config, ConfigError, load


def write(folder: Path, name: str, text: str) -> Path:
    """Write dedented ``text`` to ``folder/name`` and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_text(folder: Path, text: str, *, zone: str | None = None) -> Config:
    """Load one manifest file holding ``text``."""
    environ = {} if zone is None else {"TULLE_ZONE": zone}
    return load(write(folder, "manifest.yaml", text), environ=environ)


def problems(folder: Path, text: str) -> list[str]:
    """The problem lines loading ``text`` gives, each without the file name."""
    path = write(folder, "manifest.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    prefix = f"{path}: "
    lines = [str(problem) for problem in caught.value.problems]
    assert all(line.startswith(prefix) for line in lines), lines
    return [line.removeprefix(prefix) for line in lines]


MESH_SERVICE = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web}
spec:
  endpoints:
    - {address: "127.0.0.1:9001"}
"""

"""Every file in examples/ validates on its own and together, and says what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from tulle.config import load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.y*ml")))
def test_example_file_validates(name: str) -> None:
    if name == "routes.yaml":  # routes.yaml splits traffic for web, defined in web.yaml
        load(EXAMPLES, environ={})
    else:
        load(EXAMPLES / name, environ={})


def test_examples_together() -> None:
    config = load(EXAMPLES, environ={})
    assert {"web.default", "web-canary.default", "api.default"} <= set(config.services)
    assert len(config.services) == 8  # plus one per balancer style in load-balancing.yaml
    assert config.services["greeter.default"].protocol == "grpc"
    assert [e.address for e in config.services["web.default"].endpoints] == [
        "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"
    ]
    assert [e.address for e in config.services["api.default"].endpoints] == [
        "127.0.0.1:9101", "127.0.0.1:9102"
    ]
    (split,) = config.routes
    assert [(b.name, b.weight) for b in split.spec.rules[0].backend_refs] == [
        ("web", 90), ("web-canary", 10)
    ]

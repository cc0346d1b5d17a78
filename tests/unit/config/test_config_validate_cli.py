"""``tulle validate``: exit codes, the summary line, every problem on stderr, --show."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from config_testkit import MESH_SERVICE, write

from tulle.cli.validate import validate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_valid_configuration_prints_a_summary(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", MESH_SERVICE)
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "✓ 1 service, 0 routes from 1 file\n"


def test_examples_summary() -> None:
    result = CliRunner().invoke(validate, [str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "✓ 8 services, 1 route from 6 files\n"


def test_problems_go_to_stderr_and_exit_1(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MESH_SERVICE + "  port: 0\n")
    write(tmp_path, "b.yaml", MESH_SERVICE.replace("9001", "x").replace("web", "api"))
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f'{tmp_path / "a.yaml"}: document 1 (MeshService "web"): spec.port')
    assert lines[1].startswith(f'{tmp_path / "b.yaml"}: document 1 (MeshService "api"): '
                               "spec.endpoints[0].address")
    assert lines[-1] == "✗ 2 problems in 2 files"


def test_missing_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(validate, [str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such file or directory" in result.stderr


def test_show_prints_effective_configuration_as_yaml() -> None:
    result = CliRunner().invoke(validate, ["--show", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["mesh"]["defaults"]["timeouts"] == {
        "request": "10s", "connect": "1s", "idle": "1m", "perTry": None
    }
    services = {service["name"]: service for service in shown["services"]}
    assert services["api"]["timeouts"]["request"] == "10s"
    assert services["web"]["timeouts"]["perTry"] == "500ms"
    assert [e["address"] for e in services["web"]["endpoints"]] == [
        "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"
    ]

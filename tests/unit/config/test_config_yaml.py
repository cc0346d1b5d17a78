"""Reading files: folders, multi-document files and YAML 1.1 pitfalls turned off."""

from __future__ import annotations

from pathlib import Path

from config_testkit import MESH_SERVICE, load_text, problems, write

from tulle.config import load


def test_folder_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    for name, service in [("b.yaml", "bravo"), ("a/z.yml", "zulu"), ("a/c.yaml", "charlie")]:
        write(tmp_path, name, MESH_SERVICE.replace("web", service))
    write(tmp_path, "notes.txt", "not yaml: [")
    write(tmp_path, ".hidden/x.yaml", "not yaml: [")
    config = load(str(tmp_path))
    assert config.sources == (tmp_path / "a/c.yaml", tmp_path / "a/z.yml", tmp_path / "b.yaml")
    assert list(config.services) == ["charlie.default", "zulu.default", "bravo.default"]


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    config = load_text(tmp_path, "---\n" + MESH_SERVICE + "---\n# only a comment\n---\n")
    assert list(config.services) == ["web.default"]


def test_on_stays_a_key_and_yes_stays_a_string(tmp_path: Path) -> None:
    # YAML 1.1 reads `on` as true; a retry policy's `on:` must keep its name.
    config = load_text(tmp_path, MESH_SERVICE + "  retries:\n    on: [reset]\n")
    retries = config.services["web.default"].retries
    assert retries is not None
    assert retries.on == ("reset",)


def test_colon_numbers_are_not_sexagesimal(tmp_path: Path) -> None:
    # YAML 1.1 reads 1:30 as 90; here it stays a string and gets a clear error.
    lines = problems(tmp_path, MESH_SERVICE + "  port: 1:30\n")
    assert lines == ['document 1 (MeshService "web"): spec.port: expected an integer, got "1:30"']

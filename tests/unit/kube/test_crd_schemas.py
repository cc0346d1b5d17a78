"""The CRDs' schemas are made from the manifest models (tulle.kube.crds): the files in
the chart must be what the models give today. A change to a manifest model fails here
until ``python -m tulle.kube.crds`` is run and its output committed."""

from __future__ import annotations

from tulle.kube.crds import CRD_DIR, crd_files, structural


def test_the_crd_files_are_generated_from_the_models() -> None:
    for name, text in crd_files().items():
        assert (CRD_DIR / name).read_text() == text, f"run: python -m tulle.kube.crds ({name})"


def test_json_schema_becomes_structural() -> None:
    definitions = {"Port": {"type": "integer", "exclusiveMinimum": 0, "title": "Port"}}
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "port": {"$ref": "#/$defs/Port", "default": 80},
        "target": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "zone": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "mode": {"const": "fast"},
        "name": {"type": "string", "pattern": "^(?!-)[a-z]+$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }, "required": ["port"]}
    assert structural(schema, definitions) == {"type": "object", "properties": {
        "port": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        "target": {"x-kubernetes-int-or-string": True},
        "zone": {"type": "string", "nullable": True},
        "mode": {"type": "string", "enum": ["fast"]},
        "name": {"type": "string"},  # lookahead: not RE2, left to Tulle
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }, "required": ["port"]}

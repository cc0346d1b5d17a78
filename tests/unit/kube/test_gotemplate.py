"""The Go template subset ``tulle install`` renders the chart with (the whole chart is
compared with the real ``helm template`` in tests/k8s/test_chart.py)."""

from __future__ import annotations

import re

import pytest

from tulle.kube.gotemplate import Renderer, TemplateError, to_yaml

ROOT = {"Values": {"name": "web", "empty": "", "port": 80, "labels": {"b": "2", "a": "1"},
                   "on": True, "ports": [1, 2]},
        "Release": {"Namespace": "mesh"}}


def render(source: str, root: dict | None = None) -> str:
    renderer = Renderer()
    return renderer.render(renderer.add(source, "t.yaml"), root or ROOT, "t.yaml")


def test_fields_pipelines_and_trim_markers() -> None:
    assert render("a: {{ .Values.name | quote }}") == 'a: "web"'
    assert render("x  {{- .Values.port -}}  y") == "x80y"
    assert render("{{ .Values.empty | default .Release.Namespace }}") == "mesh"
    assert render("{{ .Values.missing }}|") == "|"
    assert render('{{ printf "%s.%s.svc" .Values.name .Release.Namespace }}') == "web.mesh.svc"
    assert render("{{/* a comment */}}ok") == "ok"


def test_blocks_variables_and_includes() -> None:
    source = ('{{- define "x.labels" -}}app: {{ .name }}{{- end }}'
              "{{- $n := .Values.name }}{{- if not .Values.empty }}[{{ $n }}]{{ else }}no"
              "{{ end }}{{ with .Values }}{{ include \"x.labels\" . | nindent 2 }}{{ end }}")
    assert render(source) == "[web]\n  app: web"
    assert render("{{ if .Values.empty }}yes{{ else }}no{{ end }}") == "no"
    assert render("{{ $x := 1 }}{{ $x = .Values.port }}{{ $x }}") == "80"


def test_to_yaml_writes_as_helm_does() -> None:
    assert to_yaml({"b": "", "a": {"z": "1", "y": "yes"}, "c": [1, "x"]}) == \
        'a:\n  y: "yes"\n  z: "1"\nb: ""\nc:\n- 1\n- x'
    assert render("l:{{ toYaml .Values.labels | nindent 2 }}") == 'l:\n  a: "1"\n  b: "2"'


@pytest.mark.parametrize(("source", "message"), [
    ("{{ range .Values.ports }}{{ . }}{{ end }}", "t.yaml:1: range is not supported"),
    ("{{ if .Values.on }}open", "if at line 1 has no end"),
    ("{{ end }}", "unexpected end"),
    ("{{ lower .Values.name }}", "'lower' is not a function"),
    ("{{ genCA \"x\" 1 }}", "genCA makes random output"),
    ("{{ $y = 1 }}", "undefined variable $y"),
    ("{{ include \"nothing\" . }}", "include of an unknown template"),
])
def test_what_it_does_not_do_is_an_error_with_its_place(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        render(source)

"""The configs written for the peers: every setting the comparison depends on is there."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.peers import (
    render_backends_nginx,
    render_haproxy,
    render_nginx_proxy,
    render_tulle_manifest,
)

ENDPOINTS = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]


def test_haproxy_one_thread_round_robin_reuse_always() -> None:
    cfg = render_haproxy(8000, ENDPOINTS)
    for line in ("nbthread 1", "balance roundrobin", "http-reuse always", "bind 127.0.0.1:8000"):
        assert line in cfg
    assert all(f"server s{i} {e}" in cfg for i, e in enumerate(ENDPOINTS, 1))


def test_haproxy_threads_for_the_workers_table() -> None:
    assert "nbthread 2" in render_haproxy(8000, ENDPOINTS, threads=2)


def test_nginx_proxy_keeps_upstream_connections_alive(tmp_path: Path) -> None:
    conf = render_nginx_proxy(tmp_path, 8000, ENDPOINTS)
    for line in (
        "worker_processes 1;",
        "keepalive 64;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "daemon off;",
    ):
        assert line in conf
    assert all(f"server {e};" in conf for e in ENDPOINTS)


def test_nginx_writes_only_inside_its_dir(tmp_path: Path) -> None:
    for conf in (
        render_nginx_proxy(tmp_path, 8000, ENDPOINTS),
        render_backends_nginx(tmp_path, [9001, 9002, 9003]),
    ):
        paths = [word.rstrip(";") for word in conf.split() if word.startswith("/") and word != "/"]
        assert paths, "pid, logs and temp paths must be set explicitly"
        assert all(p.startswith(str(tmp_path)) for p in paths)


def test_backends_answer_ok_on_each_port(tmp_path: Path) -> None:
    conf = render_backends_nginx(tmp_path, [9001, 9002, 9003])
    assert conf.count('return 200 "ok\\n";') == 3
    assert all(f"listen 127.0.0.1:{port};" in conf for port in (9001, 9002, 9003))


def test_tulle_manifest_is_a_mesh_service_named_bench() -> None:
    doc = yaml.safe_load(render_tulle_manifest(ENDPOINTS))
    assert doc["kind"] == "MeshService"
    assert doc["metadata"]["name"] == "bench"
    assert [e["address"] for e in doc["spec"]["endpoints"]] == ENDPOINTS

"""``tulle proxy`` becomes the proxy process (`tulle.proxy.process`): the command checks
its options and manifests, then execs a fresh interpreter in the same process, handing
it everything through a memory file (an injected proxy's root filesystem is read-only)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.proxy import RunningProxy, mesh_service
from tulle.proxy.process import _carrier


def test_the_command_becomes_the_proxy_process_with_the_same_pid(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service("web", ["127.0.0.1:9"]))
    proxy = RunningProxy(manifests)
    try:
        command = Path(f"/proc/{proxy.process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"from tulle.proxy.process import main; main()" in command
        status, body = proxy.admin_get("/config")
        assert status == 200 and b'"web"' in body  # the handed-over configuration
        handover = [os.readlink(link) for link in Path(f"/proc/{proxy.process.pid}/fd").iterdir()
                    if "tulle-handover" in os.readlink(link)]
        assert handover == []  # read once, then closed
    finally:
        assert proxy.stop() == 0


def test_the_handover_is_a_memory_file_not_a_file_on_disk() -> None:
    carrier = _carrier(b"x" * 200_000)  # more than a pipe holds
    try:
        assert os.readlink(f"/proc/self/fd/{carrier}").startswith("/memfd:tulle-handover")
        assert os.get_inheritable(carrier)
        with os.fdopen(os.dup(carrier), "rb") as readable:
            assert readable.read() == b"x" * 200_000
    finally:
        os.close(carrier)


def test_a_failed_exec_leaves_the_command_serving_itself(tmp_path: Path) -> None:
    # A sitecustomize makes every exec fail, as it does when the interpreter's path is
    # out of the user's reach: the command logs it and serves from its own process.
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(
        "import os\n"
        "def _refused(*args):\n"
        "    raise PermissionError(13, 'Permission denied')\n"
        "os.execv = _refused\n")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service("web", ["127.0.0.1:9"]))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, (str(probe), os.environ.get("PYTHONPATH"))))}
    proxy = RunningProxy(manifests, env=environment)
    try:
        command = Path(f"/proc/{proxy.process.pid}/cmdline").read_bytes()
        assert b"tulle.proxy.process" not in command
        assert proxy.admin_get("/ready")[0] == 200
        assert "could not start the proxy process ([Errno 13] Permission denied); " \
               "serving from this one" in proxy.log()
    finally:
        assert proxy.stop() == 0

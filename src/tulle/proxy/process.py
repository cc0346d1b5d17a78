"""The proxy process: what ``tulle proxy`` becomes once its command line and first
configuration are checked.

``tulle proxy`` parses its options (click) and checks the manifests (pydantic) in
the process the user started; then it *execs* a fresh interpreter running `main`,
in the same process (same PID, same open files, same limits), and hands it the result
through a memory file (`_carrier`): the proxy's settings and the checked
configuration as records (`tulle.config.records`). The process that serves traffic
has never loaded click, pydantic or PyYAML, which are more than a third of what the
command needed (docs/benchmarks.md, "Memory"); later reloads are checked in a child
(`tulle.config.checker`).

The handover is a pickle written by this installation for itself, read once from a
file descriptor only the exec'd process holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from tulle import interpreter

if TYPE_CHECKING:
    from tulle.config.model import Config


@dataclass(frozen=True, slots=True)
class Handover:
    """Everything the proxy process needs from the command that started it."""

    options: dict[str, Any]  # ProxyOptions' fields
    log_level: str
    log_format: str
    config: Config | None = None  # the manifests, checked (None: from a control plane)
    control: str | None = None  # the control plane's URL
    worker_channel: int | None = None  # a worker's line to its supervisor


def become_proxy(handover: Handover) -> NoReturn:
    """Replace this process with the proxy process (never returns).

    Should that fail, the proxy runs here instead, as it did before the handover
    existed: with the command's memory, but serving.
    """
    try:
        carrier = _carrier(pickle.dumps(handover, protocol=pickle.HIGHEST_PROTOCOL))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(interpreter.program(), interpreter.exec_argv(
            "-c", "from tulle.proxy.process import main; main()", str(carrier)))
    except OSError as exc:
        logging.getLogger("tulle.proxy").warning(
            "could not start the proxy process (%s); serving from this one", exc)
        run(handover)
    sys.exit(0)


def _carrier(content: bytes) -> int:
    """A file descriptor the exec'd process inherits, positioned at ``content``.

    A memory file (Linux's memfd) where there is one: an injected proxy's root
    filesystem is read-only, /tmp included. Elsewhere an unlinked temporary file.
    """
    if hasattr(os, "memfd_create"):
        carrier = os.memfd_create("tulle-handover", 0)  # not close-on-exec
    else:
        import tempfile  # here: it loads shutil and the compression modules

        carrier, path = tempfile.mkstemp(prefix="tulle-handover-")
        os.unlink(path)
        os.set_inheritable(carrier, True)
    view = memoryview(content)
    while view:
        view = view[os.write(carrier, view):]
    os.lseek(carrier, 0, os.SEEK_SET)
    return carrier


def main() -> None:
    """The proxy process: read the handover and serve until stopped."""
    with os.fdopen(int(sys.argv[1]), "rb") as carrier:
        handover: Handover = pickle.load(carrier)
    logging.basicConfig(level=handover.log_level.upper(), stream=sys.stderr,
                        format=handover.log_format)
    run(handover)


def run(handover: Handover) -> None:
    """Serve until stopped; exits 1 on a configuration or listening error."""
    import uvloop

    from tulle.config.problems import ConfigError

    try:
        uvloop.run(serve(handover))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"tulle proxy: cannot listen: {exc}", file=sys.stderr)
        sys.exit(1)


async def serve(handover: Handover) -> None:
    from tulle.config.addresses import Address
    from tulle.discovery import ConfigSource, DnsSource, ManifestSource
    from tulle.proxy.server import ProxyOptions, ProxyServer

    options = ProxyOptions(**handover.options)
    source: ConfigSource
    if handover.control is not None:
        from tulle.discovery.control_client import ControlSource

        admin_address = options.admin or Address("127.0.0.1", 4191)
        source = ControlSource(handover.control, admin=str(admin_address))
    else:
        from tulle.config.checker import CheckInChild

        assert options.manifests is not None
        loop = asyncio.get_running_loop()
        # Reloads are checked in a child process too. Services with spec.dns get their
        # endpoints from DNS (a no-op without any).
        source = DnsSource(ManifestSource(loop, options.manifests, checker=CheckInChild(loop),
                                          checked=handover.config))
    server = ProxyServer(options, source=source)
    await server.start()
    if handover.worker_channel is not None:
        from tulle.proxy.worker_channel import WorkerLink

        WorkerLink(handover.worker_channel).attach(server)
    await server.serve_until_stopped()

"""Run ``tulle proxy`` with tap allowed, for tests, whether or not the flag exists yet.

The admin page ``/tap`` is off unless ``AdminSources.tap_enabled`` is set; the
proxy command's ``--allow-tap`` flag sets it. Until that flag is wired, this
launcher turns tap on by wrapping the proxy's ``serve_admin``; afterwards it is
harmless. Usage: ``python -m tests.e2e.proxy_with_tap proxy -f ... [args]``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import tulle.proxy.server as server_module
from tulle.cli.main import main
from tulle.telemetry.admin import AdminSources

_serve_admin = server_module.serve_admin


async def _serve_admin_with_tap(
    loop: asyncio.AbstractEventLoop, host: str, port: int, sources: AdminSources
) -> asyncio.Server:
    return await _serve_admin(loop, host, port, dataclasses.replace(sources, tap_enabled=True))


if __name__ == "__main__":
    server_module.serve_admin = _serve_admin_with_tap  # type: ignore[assignment]
    main()

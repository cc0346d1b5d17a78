"""Listening sockets for the proxy and admin listeners (`tulle.transport.listen`): bound
directly for an IP address, with asyncio's options, so the IDNA codec is never loaded."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

from tulle.transport.listen import listen


async def _echo_once(host: str, server: asyncio.Server) -> bytes:
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"ping")
    data = await reader.read(4)
    writer.close()
    return data


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def test_addresses_and_names_are_served() -> None:
    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        answers = []
        for host in ("127.0.0.1", "::1", "localhost"):
            server = await listen(loop, Echo, host, 0)
            answers.append(await _echo_once(host, server))
            server.close()
        return answers

    assert asyncio.run(scenario()) == [b"ping"] * 3


def test_options_are_asyncios_and_reuse_port_shares_the_port() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first = await listen(loop, Echo, "::1", 0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await listen(loop, Echo, "::1", port, reuse_port=True)
        sock = second.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        alone = await listen(loop, Echo, "127.0.0.1", 0)
        assert not alone.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        for server in (first, second, alone):
            server.close()

    asyncio.run(scenario())


def test_an_address_in_use_is_an_os_error() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        taken = await listen(loop, Echo, "127.0.0.1", 0)
        try:
            await listen(loop, Echo, "127.0.0.1", taken.sockets[0].getsockname()[1])
        except OSError:
            return
        finally:
            taken.close()
        raise AssertionError("bound twice")

    asyncio.run(scenario())


def test_binding_an_address_loads_no_idna_codec() -> None:
    probe = ("import asyncio, sys\n"
             "from tulle.transport.listen import listen\n"
             "async def main():\n"
             "    server = await listen(asyncio.get_running_loop(), asyncio.Protocol,"
             " '127.0.0.1', 0)\n"
             "    server.close()\n"
             "asyncio.run(main())\n"
             "print('encodings.idna' in sys.modules, 'unicodedata' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert result.stdout.split() == [b"False", b"False"]

"""``python bench/grpc_backend.py PORT [PORT ...]``: the gRPC backend of the h2 bench.

One grpcio server process listening on every PORT (each port an endpoint for the
proxies), answering ``/bench.Echo/Unary`` with a 2-byte message at once: the gRPC
counterpart of the nginx ``return 200 "ok"`` backends, so differences are the proxies'.
Raw bytes in and out (no generated code). Prints ``serving`` once listening.
"""

from __future__ import annotations

import sys
import time
from concurrent import futures

import grpc


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"ok"


def main(ports: list[int]) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_concurrent_streams", 256)])
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(_unary)}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    for port in ports:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main([int(port) for port in sys.argv[1:]])

"""Run an ASGI app with uvicorn on a free loopback port in a background thread.

Used by `fabula up` on the tiny profile (the web app starts its services itself) and by the tests, so both
talk real HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from shared.logs import server_log_options


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerThread:
    """The socket is bound here, before the app's start-up runs: uvicorn binds only after the lifespan, and a web
    app that starts its own services in its lifespan would otherwise race them for the port it was given."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int | None = None, **options: Any) -> None:
        """`options` go to uvicorn; by default no `X-Forwarded-For` is believed (uvicorn itself trusts loopback)."""
        self.host = host
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port or 0))
        self.port = self.socket.getsockname()[1]
        options = {"proxy_headers": False, "timeout_keep_alive": 5, **options}
        config = uvicorn.Config(
            app, host=self.host, port=self.port, lifespan="on", timeout_graceful_shutdown=2, **server_log_options(), **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} stopped during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on port {self.port} did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

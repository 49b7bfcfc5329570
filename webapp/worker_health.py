"""`fabula worker`'s own small HTTP server: `/healthz` (the process is alive), `/readyz` (its job database and its
broker answer; 503 naming the one that does not) and `/metrics` (Prometheus).

Its port is `FABULA_WORKER_HEALTH_PORT` (8110). 0 asks for any free port; a port another worker on this machine
already holds gives way to a free one, with a warning. Either way the address is printed and logged, so several
workers run on one machine with the defaults.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, host: str, port: int, *, owner: str, registry: CollectorRegistry, down: Callable[[], list[str]]) -> None:
        handler = _handler(owner, registry, down)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            logger.warning("the worker health port is taken (another worker?); using a free one", extra={"fields": {"port": port}})
            self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="worker-health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(owner: str, registry: CollectorRegistry, down: Callable[[], list[str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path == "/healthz":
                self._answer(200, {"status": "ok", "service": "worker", "owner": owner})
            elif self.path == "/readyz":
                missing = down()
                body = {"status": "not_ready" if missing else "ready", "service": "worker", "owner": owner, "down": missing}
                self._answer(503 if missing else 200, body)
            elif self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                error = {"type": "not_found", "message": "The worker answers /healthz, /readyz and /metrics.", "param": "path"}
                self._answer(404, {"error": error})

        def _answer(self, status: int, body: Mapping[str, object]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, media_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            return None  # probes every few seconds are not news

    return Handler

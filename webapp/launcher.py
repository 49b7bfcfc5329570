"""Starting the model services: in this process on loopback threads (tiny profile: `fabula story`, the web app,
tests), or as one process per service pinned to a device (`fabula up`)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.errors import FabulaError, ModelUnavailable
from shared.server_thread import ServerThread
from shared.settings import Settings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    resolver: str
    port: int
    url_setting: str


SERVICES: dict[str, ServiceSpec] = {
    "caption": ServiceSpec("caption", "services.caption.app", "resolve_caption_model", 8101, "caption_url"),
    "illustrate": ServiceSpec("illustrate", "services.illustrate.app", "resolve_illustrate_models", 8102, "illustrate_url"),
    "llm": ServiceSpec("llm", "services.llm.app", "resolve_llm_model", 8103, "llm_url"),
    "narrate": ServiceSpec("narrate", "services.narrate.app", "resolve_narrate_model", 8104, "narrate_url"),
}


class ServiceStartError(FabulaError):
    status_code = 503
    error_type = "service_start_error"


def check_models(name: str, settings: Settings) -> None:
    """Fail fast (ModelUnavailable) when a service's weights are not on this machine; builds tiny ones."""
    spec = SERVICES[name]
    getattr(importlib.import_module(spec.module), spec.resolver)(settings)


def create_service_app(name: str, settings: Settings, device: str = "cpu") -> object:
    return importlib.import_module(SERVICES[name].module).create_app(settings, device=device)


def wait_ready(url: str, *, name: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceStartError(f"The {name} service stopped while starting (exit code {process.returncode}); see its log above.")
        try:
            response = httpx.get(f"{url}/readyz", timeout=2.0)
            if response.status_code == 200:
                return
            body = response.json()
            if body.get("status") == "failed":
                raise ServiceStartError(f"The {name} service could not load its model: {body.get('error')}")
            last = body.get("status", str(response.status_code))
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise ServiceStartError(f"The {name} service at {url} was not ready after {timeout_s:.0f} s (last: {last}).")


class InProcessServices:
    """The model services on free loopback ports in this process; real HTTP, no subprocesses."""

    def __init__(self, settings: Settings, *, device: str = "cpu", names: tuple[str, ...] = tuple(SERVICES)) -> None:
        self.settings = settings
        self.device = device
        self.names = names
        self.servers: dict[str, ServerThread] = {}

    def start(self, timeout_s: float = 600.0) -> Settings:
        for name in self.names:
            check_models(name, self.settings)
        try:
            for name in self.names:
                self.servers[name] = ServerThread(create_service_app(name, self.settings, self.device)).start()
            for name, server in self.servers.items():
                wait_ready(server.url, name=name, timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.settings.model_copy(update={SERVICES[name].url_setting: server.url for name, server in self.servers.items()})

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServiceProcesses:
    """One `fabula serve NAME` process per service, each on its own port and device."""

    def __init__(self, settings: Settings, *, devices: dict[str, str], host: str = "127.0.0.1", log_dir: Path | None = None) -> None:
        self.settings = settings
        self.devices = devices
        self.host = host
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, timeout_s: float = 900.0) -> Settings:
        for name in SERVICES:
            check_models(name, self.settings)
        urls = {}
        for name, spec in SERVICES.items():
            # Each service listens on the port of its configured URL (FABULA_CAPTION_URL, ...), default 8101-8103.
            port = httpx.URL(getattr(self.settings, spec.url_setting)).port or spec.port
            command = [
                sys.executable, "-m", "webapp.cli", "serve", name, "--profile", self.settings.profile.value,
                "--device", self.devices.get(name, "cpu"), "--host", self.host, "--port", str(port),
            ]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            if self.devices.get(name, "cpu") == "cpu" and "OMP_NUM_THREADS" not in os.environ:
                # The CPU services share the cores instead of each claiming all of them.
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // len(SERVICES)))
            self.processes[name] = subprocess.Popen(command, env=env)
            urls[name] = f"http://{self.host if self.host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
        try:
            for name, url in urls.items():
                wait_ready(url, name=name, timeout_s=timeout_s, process=self.processes[name])
        except FabulaError:
            self.stop()
            raise
        return self.settings.model_copy(update={SERVICES[name].url_setting: url for name, url in urls.items()})

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


__all__ = ["SERVICES", "InProcessServices", "ServiceProcesses", "ModelUnavailable", "check_models", "create_service_app", "wait_ready"]

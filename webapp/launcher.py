"""Starting the model services: in this process on loopback threads (tiny profile: `fabula story`, the web app,
tests), or as one process per service pinned to a device (`fabula up`).

Everything it knows of a service (name, port, URL setting, model check, how to build its app) comes from that
service's one spec in the registry (`services.registry.SERVICES`)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.registry import SERVICES
from shared.errors import FabulaError, ModelUnavailable
from shared.server_thread import ServerThread
from shared.settings import Settings


class ServiceStartError(FabulaError):
    status_code = 503
    error_type = "service_start_error"


def check_models(name: str, settings: Settings) -> None:
    """Fail fast (ModelUnavailable) when a service's weights are not on this machine; builds tiny ones."""
    SERVICES[name].resolver(settings)


def create_service_app(name: str, settings: Settings, device: str = "cpu") -> FastAPI:
    """The app of the service called `name` (its spec's `create_app`), for `fabula serve` and tests that name one."""
    return SERVICES[name].create_app(settings, device=device)


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


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (host, port): a bind there fails (a socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_port_free(host: str, port: int, *, what: str, setting: str) -> None:
    """Refuse to start `what` on a port something else holds, rather than talk to whatever answers there."""
    if port_in_use(host, port):
        raise ServiceStartError(
            f"Port {port} on {host}, where {what} would listen, is already in use (perhaps by a service an earlier "
            f"`fabula up` left running). Stop whatever listens there, or set {setting} to a free port."
        )


_PR_SET_PDEATHSIG = 1


def _child_options() -> dict:
    """Popen options that make a child die with this process (Linux: PR_SET_PDEATHSIG, even after a SIGKILL).

    `prctl` is looked up here, in the parent: between fork and exec the child only calls it, since loading a
    library there could wait forever on a lock another thread of the parent held at the fork.
    """
    if not sys.platform.startswith("linux"):
        return {}
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def die_with_parent() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0 and os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)  # the parent died before the request took hold

    return {"preexec_fn": die_with_parent}


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
    """One `fabula serve NAME` process per service, each on its own port and device.

    It only ever talks to services it started: a port already taken stops it before anything starts, and on
    Linux each service dies with this process (PR_SET_PDEATHSIG), so a killed `fabula up` leaves no port held.

    The services write their log lines to this process's terminal (or file), in its format and verbosity
    (FABULA_LOG_FORMAT, FABULA_VERBOSE are inherited). Each runs in a process group of its own: Ctrl-C reaches
    `fabula up` alone, which stops each service once, instead of every service catching the interrupt wherever
    it is (loading a model, or already exiting when the stop arrives) and printing a traceback about it.
    """

    def __init__(self, settings: Settings, *, devices: dict[str, str], host: str = "127.0.0.1", log_dir: Path | None = None) -> None:
        self.settings = settings
        self.devices = devices
        self.host = host
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def ports(self) -> dict[str, int]:
        """Each service listens on the port of its configured URL (FABULA_CAPTION_URL, ...), else its spec's port."""
        return {name: httpx.URL(getattr(self.settings, spec.url_setting)).port or spec.port for name, spec in SERVICES.items()}

    def start(self, timeout_s: float = 900.0) -> Settings:
        ports = self.ports()
        for name, port in ports.items():
            check_port_free(self.host, port, what=f"the {name} service", setting=f"FABULA_{SERVICES[name].url_setting.upper()}")
        for name in SERVICES:
            check_models(name, self.settings)
        urls = {}
        for name, port in ports.items():
            command = [
                sys.executable, "-m", "webapp.cli", "serve", name, "--profile", self.settings.profile.value, "--profile-said",
                "--device", self.devices.get(name, "cpu"), "--host", self.host, "--port", str(port),
            ]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            if self.devices.get(name, "cpu") == "cpu" and "OMP_NUM_THREADS" not in os.environ:
                # The CPU services share the cores instead of each claiming all of them.
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // len(SERVICES)))
            self.processes[name] = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0, **_child_options())
            urls[name] = f"http://{self.host if self.host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
        try:
            for name, url in urls.items():
                wait_ready(url, name=name, timeout_s=timeout_s, process=self.processes[name])
        except BaseException:  # a service that failed, or Ctrl-C while they load
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


__all__ = [
    "SERVICES", "InProcessServices", "ServiceProcesses", "ModelUnavailable", "check_models", "check_port_free", "create_service_app",
    "port_in_use", "wait_ready",
]

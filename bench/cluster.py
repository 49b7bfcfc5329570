"""Real PostgreSQL and Redis servers on loopback, and `fabula serve web` / `fabula worker` processes pointed at them,
for the scale-out tests and the workers benchmark. Every process is started here and stopped (killed, if need be)
by whoever started it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.server_thread import free_port
from shared.settings import Settings

POSTGRES_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) if Path("/usr/lib/postgresql").is_dir() else None


def servers_available() -> bool:
    return POSTGRES_BIN is not None and shutil.which("redis-server") is not None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` user the Debian package creates."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://fabula@127.0.0.1:{self.port}/fabula"

    def start(self) -> Postgres:
        data = self.folder / "pgdata"
        data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(data, "postgres")
        subprocess.run(_as_postgres([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "fabula", "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True)
        self.run()
        subprocess.run(_as_postgres([str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "fabula", "fabula"]),
                       check=True, capture_output=True)
        return self

    def run(self) -> Postgres:
        """Start the server on its existing data (again, after `stop`)."""
        data = self.folder / "pgdata"
        self.process = subprocess.Popen(
            _as_postgres([
                str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.folder),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            ]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        """A fast shutdown through pg_ctl: as root the server runs under `runuser`, which does not pass signals on."""
        if self.process and self.process.poll() is None:
            stop = [str(POSTGRES_BIN / "pg_ctl"), "stop", "-D", str(self.folder / "pgdata"), "-m", "fast", "-w", "-t", "30"]
            subprocess.run(_as_postgres(stop), capture_output=True)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Redis:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        import redis

        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Redis did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@dataclass
class FabulaProcess:
    name: str
    process: subprocess.Popen
    url: str | None = None
    log: Path | None = None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def fabula(name: str, arguments: list[str], environment: dict[str, str], log_dir: Path) -> FabulaProcess:
    log = log_dir / f"{name}.log"
    with log.open("wb") as stream:
        process = subprocess.Popen([sys.executable, "-m", "webapp.cli", *arguments], env={**os.environ, **environment}, stdout=stream, stderr=subprocess.STDOUT)
    return FabulaProcess(name, process, log=log)


def _wait_healthy(process: FabulaProcess, path: str, timeout_s: float) -> FabulaProcess:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{process.url}{path}", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not start:\n{process.log.read_text()[-3000:] if process.log else ''}")
        time.sleep(0.3)


def web_replica(name: str, environment: dict[str, str], log_dir: Path) -> FabulaProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    replica = fabula(name, ["serve", "web", "--profile", "tiny", "--port", str(port)], {**environment, "FABULA_PUBLIC_URL": url}, log_dir)
    replica.url = url
    return _wait_healthy(replica, "/readyz", 180)


def worker(
    name: str, environment: dict[str, str], log_dir: Path, *, concurrency: int = 2, profile: str = "tiny", health_port: int | None = None,
) -> FabulaProcess:
    """A `fabula worker`; with no `health_port` it keeps the default (8110, or any free port when that is taken) and
    its address is read from the line it prints."""
    command = ["worker", "--profile", profile, "--concurrency", str(concurrency)]
    extra = {"FABULA_WORKER_HEALTH_PORT": str(health_port)} if health_port is not None else {}
    process = fabula(name, command, {**environment, **extra}, log_dir)
    deadline = time.monotonic() + 120
    while process.url is None:
        printed = re.search(r"health: (http://[\d.]+:\d+)/healthz", process.log.read_text(errors="replace") if process.log else "")
        if printed:
            process.url = printed.group(1)
        elif process.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{process.log.read_text()[-3000:] if process.log else ''}")
        else:
            time.sleep(0.3)
    return _wait_healthy(process, "/healthz", 120)


def tiny_cluster_environment(
    services: Settings, folder: Path, postgres: Postgres, redis: Redis, *, lease_s: float, visibility_s: float, **more: str,
) -> dict[str, str]:
    """The settings every web replica and worker of a tiny-profile test cluster shares: the running tiny services,
    the cluster's PostgreSQL and Redis, a shared data folder, short leases so faults are seen quickly."""
    return {
        "FABULA_PROFILE": "tiny", "FABULA_CACHE_DIR": str(services.cache_dir), "FABULA_DATA_DIR": str(folder / "shared-data"),
        "FABULA_DATABASE_URL": postgres.url, "FABULA_BROKER_URL": redis.url,
        "FABULA_CAPTION_URL": services.caption_url, "FABULA_ILLUSTRATE_URL": services.illustrate_url,
        "FABULA_LLM_URL": services.llm_url, "FABULA_NARRATE_URL": services.narrate_url, "FABULA_RATE_LIMIT_PER_MINUTE": "1000",
        "FABULA_BROKER_VISIBILITY_TIMEOUT_S": str(visibility_s), "FABULA_JOB_LEASE_S": str(lease_s), "FABULA_LOG_LEVEL": "WARNING",
        **more,
    }


def migrated(environment: dict[str, str], folder: Path) -> None:
    """`fabula db upgrade` against the cluster's database, once, before any replica starts."""
    migration = fabula("migrate", ["db", "upgrade"], environment, folder)
    if migration.process.wait(timeout=120) != 0:
        raise RuntimeError(migration.log.read_text() if migration.log else "the migration failed")


def scratch_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fabula-cluster-"))
    folder.chmod(0o755)
    return folder

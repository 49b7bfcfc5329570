"""`fabula up` as a subprocess on free loopback ports: the studio a browser test or a benchmark drives.

Every service gets a free port, the data goes under `work`, and the hub is never asked (`--no-fetch`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from shared.server_thread import free_port

SERVICES = ("CAPTION", "ILLUSTRATE", "LLM", "NARRATE")


class StudioNotReady(RuntimeError):
    """`fabula up` stopped, or did not answer /readyz in time; the message ends with its log."""


@contextmanager
def running_studio(profile: str, work: Path, *, cache_dir: Path | None = None, timeout_s: float = 600) -> Iterator[str]:
    """Start `fabula up --profile PROFILE` (its log in `work/fabula-up.log`), wait until it is ready, yield its
    address, and stop it."""
    port = free_port()
    env = {
        **os.environ, **{f"FABULA_{name}_URL": f"http://127.0.0.1:{free_port()}" for name in SERVICES},
        "FABULA_DATA_DIR": str(work / "data"), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
        **({"FABULA_CACHE_DIR": str(cache_dir)} if cache_dir is not None else {}),
    }
    env.pop("FABULA_API_KEY", None)
    log_path = work / "fabula-up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "up", "--profile", profile, "--no-fetch", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log_path, timeout_s)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StudioNotReady(f"`fabula up` stopped (exit code {process.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StudioNotReady(f"`fabula up` was not ready after {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")

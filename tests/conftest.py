"""Shared fixtures: every path points at a temporary folder; tiny models are built once per test run."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from shared.settings import Profile, Settings  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine they fight over the cores.
torch.set_num_threads(1)

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fabula")


@pytest.fixture(scope="session")
def tiny_settings(session_dir: Path) -> Settings:
    """Tiny-profile settings whose model cache lives for the whole test run (models are built once)."""
    return Settings(profile=Profile.tiny, cache_dir=session_dir / "cache", data_dir=session_dir / "data", api_key=None)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from two threads, and on a busy shared CPU a thread pool waits on its slowest member.
    Modules that run tiny models in this process use it: `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_settings: Settings) -> Path:
    """The tiny SDXL base + refiner folder (with its tiny IP-Adapter and safety classifier), built once per run."""
    from services.illustrate.tiny import build_tiny_sdxl
    from shared.profiles import tiny_dir

    return build_tiny_sdxl(tiny_dir("illustrate", tiny_settings))


@pytest.fixture
def photo_bytes() -> bytes:
    """A real photograph (public domain, see tests/assets/CREDITS.md)."""
    return (ASSETS / "photo.jpg").read_bytes()


@pytest.fixture(scope="session")
def tiny_stack(tiny_settings: Settings):
    """The three tiny services on loopback ports for the whole test run; yields settings that point at them."""
    from webapp.launcher import InProcessServices

    services = InProcessServices(tiny_settings)
    settings = services.start()
    yield settings
    services.stop()


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample's values whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample_name, _, label_text = head.partition("{")
        if sample_name != name:
            continue
        if all(f'{key}="{expected}"' in label_text for key, expected in labels.items()):
            total += float(value)
    return total


EPUBCHECK_JAR = Path("/usr/share/java/epubcheck.jar")


def epubcheck_command() -> list[str] | None:
    """Debian installs epubcheck as a jar that only runs through java."""
    import shutil

    if EPUBCHECK_JAR.is_file() and shutil.which("java"):
        return ["java", "-jar", str(EPUBCHECK_JAR)]
    found = shutil.which("epubcheck")
    return [found] if found else None


CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, headless, with nothing that reaches for the network (this machine has none to give).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium through Playwright (`playwright install` cannot download a browser here)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()

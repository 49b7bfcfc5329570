"""On a terminal, `fabula up` and the books it makes print Fabula's own lines (what started, where, each book's news,
the warnings that matter) and nothing from the libraries underneath, unless `fabula --verbose` asks for them."""

from __future__ import annotations

import logging
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.logs import configure_logging
from shared.server_thread import free_port
from shared.settings import Settings

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
# What `fabula up` prints itself, besides log lines (webapp/cli.py).
UP_LINES = (
    "Profile: ", "Starting the caption, illustrate, llm and narrate services", "Services ready in ", "Fabula is running at ", "Books' QR codes open ",
    "Note: ",
)
# shared/logs.py's HumanFormatter: time, level, message; a library's line names its logger in brackets first.
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (?:debug|info|warning|error|critical) +(?P<message>\S.*)$")
LIBRARY_LINE = re.compile(
    r"^\[[\w.-]+\] |^\{|Traceback|Warning:|CLIP can only handle|fontTools|\[transformers|\[diffusers|\d+%\|"  # tqdm: " 40%|████"
)
# The variables a shell might hold that would quiet (or loosen) the libraries instead of Fabula doing it.
LOGGING_VARIABLES = (
    "FABULA_LOG_FORMAT", "FABULA_VERBOSE", "FABULA_API_KEY", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS",
    "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS",
)


class Terminal:
    """A command in a pseudo-terminal, as in a shell window: stdout and stderr are a tty, read as they come."""

    def __init__(self, command: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.primary, secondary = pty.openpty()
        # A session of its own, as a shell gives a job: Ctrl-C goes to its process group (`interrupt`).
        self.process = subprocess.Popen(command, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=cwd, start_new_session=True)
        os.close(secondary)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.primary, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                return
            if not data:
                return
            with self._lock:
                self._output.extend(data)

    def text(self) -> str:
        with self._lock:
            return self._output.decode("utf-8", errors="replace").replace("\r\n", "\n")

    def wait_for(self, text: str, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.text():
            if self.process.poll() is not None:
                pytest.fail(f"`fabula up` stopped (exit code {self.process.returncode}) before printing {text!r}:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"`fabula up` did not print {text!r} within {timeout_s:.0f} s:\n{self.text()[-4000:]}")
            time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C, as the terminal sends it (SIGINT to the foreground process group); the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=120)
        self._reader.join(timeout=30)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=30)
        os.close(self.primary)


@pytest.fixture
def terminal_session(tiny_settings: Settings, tmp_path: Path) -> Iterator[tuple[Terminal, str]]:
    """`fabula up --profile tiny` in a pseudo-terminal on free loopback ports, sharing the run's tiny models."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in LOGGING_VARIABLES}
    env.update({
        "FABULA_CAPTION_URL": f"http://127.0.0.1:{free_port()}", "FABULA_ILLUSTRATE_URL": f"http://127.0.0.1:{free_port()}",
        "FABULA_LLM_URL": f"http://127.0.0.1:{free_port()}", "FABULA_NARRATE_URL": f"http://127.0.0.1:{free_port()}",
        "FABULA_DATA_DIR": str(tmp_path / "data"), "FABULA_CACHE_DIR": str(tiny_settings.cache_dir), "HF_HUB_OFFLINE": "1",
    })
    terminal = Terminal([sys.executable, "-m", "webapp.cli", "up", "--profile", "tiny", "--port", str(port)], env=env, cwd=tmp_path)
    try:
        yield terminal, f"http://127.0.0.1:{port}"
    finally:
        terminal.close()


def wait_ready(url: str, terminal: Terminal, timeout_s: float = 300) -> None:
    """The address is printed just before the web app listens there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and terminal.process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the web app at {url} did not answer /readyz:\n{terminal.text()[-4000:]}")


def make_book(url: str) -> dict:
    """One page, not read aloud, through the REST API; follows its progress events to the end."""
    with httpx.Client(base_url=url, timeout=120) as client:
        response = client.post(
            "/api/v1/stories", files={"photo": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")}, data={"pages": "1", "narrate": "false", "seed": "7"}
        )
        assert response.status_code == 202, response.text
        story = response.json()
        with client.stream("GET", story["links"]["events"], timeout=600) as events:
            for _ in events.iter_lines():
                pass
        return client.get(story["links"]["self"]).json()


def test_a_terminal_shows_fabulas_own_lines_and_no_library_chatter(terminal_session: tuple[Terminal, str]) -> None:
    terminal, url = terminal_session
    terminal.wait_for("Fabula is running at", timeout_s=900)
    wait_ready(url, terminal)
    story = make_book(url)
    assert story["status"] == "done", story
    code = terminal.interrupt()
    assert code in (0, 130), terminal.text()[-4000:]

    lines = [line for line in terminal.text().splitlines() if line.strip()]
    assert any(line.startswith("Fabula is running at ") for line in lines)
    assert any(LOG_LINE.match(line) and "model loaded" in line for line in lines)  # the human format, as on any terminal
    for line in lines:
        assert not LIBRARY_LINE.search(line), f"a library's line on the terminal: {line!r}"
        assert LOG_LINE.match(line) or line.startswith(UP_LINES), f"a line that is neither a Fabula log line nor `fabula up`'s own: {line!r}"


def test_verbose_lets_the_libraries_speak(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fabula --verbose` sets FABULA_VERBOSE, which the services it starts inherit and `configure_logging` reads."""
    from webapp.cli import QUIET_START, _quiet_start, build_parser

    assert build_parser().parse_args(["--verbose", "up"]).verbose
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("fontTools").level, logging.getLogger("transformers").level)
    try:
        for name in QUIET_START:  # set, then removed: the test's end puts back what was there before
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
        monkeypatch.setenv("FABULA_VERBOSE", "1")
        _quiet_start()
        assert "TQDM_DISABLE" not in os.environ and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ  # progress bars on
        configure_logging("INFO")
        assert logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
        assert logging.getLogger("transformers.configuration_utils").isEnabledFor(logging.WARNING)

        monkeypatch.delenv("FABULA_VERBOSE")
        _quiet_start()
        assert os.environ["TQDM_DISABLE"] == "1"
        configure_logging("INFO")
        assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
        assert not logging.getLogger("transformers.configuration_utils").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
        logging.getLogger("fontTools").setLevel(saved[2])
        logging.getLogger("transformers").setLevel(saved[3])


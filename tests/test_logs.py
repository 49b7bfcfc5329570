"""The terminal shows Fabula's own lines, not the libraries' chatter."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from shared.logs import CHATTY_LIBRARIES, chosen_format, configure_logging


def test_library_chatter_is_quiet_and_fabulas_own_lines_are_not() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES})
    try:
        configure_logging("INFO", verbose=False)
        assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
        assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
        assert not logging.getLogger("llama.cpp").isEnabledFor(logging.INFO)
        assert logging.getLogger("fontTools.subset").isEnabledFor(logging.WARNING)
        assert logging.getLogger("webapp.jobs.pipeline").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def test_a_terminal_gets_human_lines_and_everything_else_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    logger = logging.getLogger("webapp.jobs.sweeper")
    try:
        configure_logging("INFO", log_format="human")
        logger.warning("a book's order was lost; sending it again", extra={"fields": {"status": "running"}})
        human = capsys.readouterr().err.strip().splitlines()[-1]
        assert "warning" in human and human.endswith("a book's order was lost; sending it again (status running)")
        assert not human.startswith("{")

        configure_logging("INFO", log_format="json")
        logger.warning("a book's order was lost; sending it again", extra={"fields": {"status": "running"}})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["level"] == "warning" and line["status"] == "running"
        assert chosen_format("auto") == "json"  # pytest's stderr is not a terminal
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]


def test_the_environment_fixes_the_format_and_a_library_line_names_its_library(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        monkeypatch.setenv("FABULA_LOG_FORMAT", "json")
        assert chosen_format() == "json"
        monkeypatch.setenv("FABULA_LOG_FORMAT", "human")
        assert chosen_format() == "human"  # even off a terminal, as here
        configure_logging("INFO", verbose=False)
        logging.getLogger("celery.worker.consumer").warning("Connection to broker lost.")
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith("warning  [celery.worker.consumer] Connection to broker lost.")
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]


def test_the_web_servers_own_warnings_come_in_fabulas_format(capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from shared.logs import server_log_options

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("uvicorn.error").level, logging.getLogger("uvicorn.access").level)
    try:
        configure_logging("INFO", log_format="human", verbose=False)
        uvicorn.Config(app="webapp.app:create_web_app", **server_log_options(verbose=False))  # uvicorn sets its logging up here
        logging.getLogger("uvicorn.access").info('127.0.0.1:5000 - "GET /readyz HTTP/1.1" 200')
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith("warning  [uvicorn.error] Invalid HTTP request received.")  # no access line
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
        logging.getLogger("uvicorn.error").setLevel(saved[2])
        logging.getLogger("uvicorn.access").setLevel(saved[3])


# transformers and diffusers set their logging up on import with a handler of their own; Fabula takes their lines
# back at that moment, so a fresh process (which has not imported them yet) shows it.
LIBRARY_LINES = """
from shared.logs import configure_logging
configure_logging("INFO")
from transformers.utils import logging as transformers_logging
from diffusers.utils import logging as diffusers_logging
for library_logging, name in ((transformers_logging, "transformers.configuration_utils"), (diffusers_logging, "diffusers.models.modeling_utils")):
    logger = library_logging.get_logger(name)
    logger.warning("advice for the library's developers")
    logger.error("a real error")
    print(library_logging.is_progress_bar_enabled())
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_transformers_and_diffusers_speak_through_fabulas_lines(verbose: bool) -> None:
    environment = {key: value for key, value in os.environ.items() if key not in ("FABULA_LOG_FORMAT", "FABULA_VERBOSE")}
    if verbose:
        environment["FABULA_VERBOSE"] = "1"
    run = subprocess.run([sys.executable, "-c", LIBRARY_LINES], capture_output=True, text=True, env=environment, timeout=300, check=True)
    lines = [json.loads(line) for line in run.stderr.splitlines()]  # stderr is a pipe: JSON, and nothing but JSON
    assert run.stdout.split() == [str(verbose)] * 2  # their progress bars (loading weights) follow --verbose too
    expected = ["warning", "error"] if verbose else ["error"]
    for name in ("transformers.configuration_utils", "diffusers.models.modeling_utils"):
        assert [line["level"] for line in lines if line["logger"] == name] == expected

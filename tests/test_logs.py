"""The terminal shows Fabula's own lines, not the libraries' chatter."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import CHATTY_LIBRARIES, chosen_format, configure_logging


def test_library_chatter_is_quiet_and_fabulas_own_lines_are_not() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES})
    try:
        configure_logging("INFO")
        assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
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

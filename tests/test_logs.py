"""The terminal shows Fabula's own lines, not the libraries' chatter."""

from __future__ import annotations

import logging

from shared.logs import CHATTY_LIBRARIES, configure_logging


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

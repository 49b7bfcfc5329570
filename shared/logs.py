"""Logging: JSON lines for machines, short human lines on a terminal; every line carries the request id and,
inside a job, the job id.

`FABULA_LOG_FORMAT` (or `fabula --log-format`) picks: `json`, `human`, or `auto` (the default): human lines when
stderr is a terminal, JSON otherwise (containers, services started by `fabula up`, log collectors). The image sets
`json`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
        if job_id := job_id_var.get():
            entry["job_id"] = job_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """`12:03:04 warning  the book's lease was lost (job 3f2a…)`: the message first, the ids and fields after."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        if job_id := job_id_var.get():
            fields["job"] = job_id[:8]
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        details = ", ".join(f"{key} {value}" for key, value in fields.items())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname.lower():<8} {record.getMessage()}"
        line += f" ({details})" if details else ""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def chosen_format(log_format: str | None = None) -> str:
    """`json` or `human`: as asked (the argument, else FABULA_LOG_FORMAT), `auto` deciding by whether stderr is a terminal."""
    wanted = (log_format or os.environ.get("FABULA_LOG_FORMAT") or "auto").strip().lower()
    if wanted in ("json", "human"):
        return wanted
    return "human" if sys.stderr.isatty() else "json"


# Libraries that narrate their own start-up and every request at INFO; their warnings and errors still show.
CHATTY_LIBRARIES = (
    "httpx", "httpx2", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "gradio", "gradio_client", "huggingface_hub", "urllib3", "PIL",
    "fontTools",  # dozens of "GSUB pruned" lines for every font a book subsets
    "llama.cpp",  # the model loader's report (services/llm/llama_engine.py routes it here)
)
# Libraries whose warnings are advice to their own developers (a deprecation, "torchvision is not installed, using
# the PIL backend"): only their errors are shown, unless Fabula itself logs at DEBUG.
ADVISORY_LIBRARIES = ("transformers", "diffusers", "torch", "accelerate", "py.warnings")


def configure_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Send log lines to stderr (JSON or human, `chosen_format`) and quiet the libraries' chatter; safe to call more
    than once.

    Python warnings (torch's, diffusers') go through logging too, so they follow the same levels.
    """
    root = logging.getLogger()
    formatter_type = HumanFormatter if chosen_format(log_format) == "human" else JsonFormatter
    if not any(type(handler.formatter) is formatter_type for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter_type())
        root.handlers = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    debugging = root.level <= logging.DEBUG
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debugging else logging.WARNING)
    for name in ADVISORY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debugging else logging.ERROR)


def log_fields(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    """Log `message` with structured key/value fields."""
    logger.log(level, message, extra={"fields": fields})

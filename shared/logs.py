"""Structured (JSON) logging; every line carries the request id and, inside a job, the job id."""

from __future__ import annotations

import contextvars
import json
import logging
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


# Libraries that narrate their own start-up and every request at INFO; their warnings and errors still show.
CHATTY_LIBRARIES = (
    "httpx", "httpx2", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "gradio", "gradio_client", "huggingface_hub", "urllib3", "PIL",
    "fontTools",  # dozens of "GSUB pruned" lines for every font a book subsets
    "llama.cpp",  # the model loader's report (services/llm/llama_engine.py routes it here)
)
# Libraries whose warnings are advice to their own developers (a deprecation, "torchvision is not installed, using
# the PIL backend"): only their errors are shown, unless Fabula itself logs at DEBUG.
ADVISORY_LIBRARIES = ("transformers", "diffusers", "torch", "accelerate", "py.warnings")


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr and quiet the libraries' chatter; safe to call more than once.

    Python warnings (torch's, diffusers') go through logging too, so they follow the same levels.
    """
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
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

"""Logging: JSON lines for machines, short human lines on a terminal; every line carries the request id and,
inside a job, the job id. The libraries' chatter stays out unless asked for.

`FABULA_LOG_FORMAT` (or `fabula --log-format`) picks: `json`, `human`, or `auto` (the default): human lines when
stderr is a terminal, JSON otherwise (containers, log collectors). The services `fabula up` starts write to its
own terminal or file, so they choose as it does. The image sets `json`.

`FABULA_VERBOSE=1` (or `fabula --verbose`) lets the libraries speak: their INFO lines, warnings and progress bars.
Without it only their warnings that matter (errors, for the libraries whose warnings are advice to their own
developers) reach the terminal, and always through Fabula's own format.
"""

from __future__ import annotations

import contextvars
import importlib.abc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TypedDict

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


# The packages whose loggers are Fabula's own; any other logger is a library's.
FABULA_PACKAGES = ("webapp", "services", "shared", "gpu_setup")


def is_fabula_logger(name: str) -> bool:
    return name.split(".", 1)[0] in FABULA_PACKAGES


class HumanFormatter(logging.Formatter):
    """`12:03:04 warning  the book's lease was lost (job 3f2a…)`: the message first, the ids and fields after.

    A library's line says whose it is: `12:03:04 error    [diffusers.pipelines…] …`."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        if job_id := job_id_var.get():
            fields["job"] = job_id[:8]
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        details = ", ".join(f"{key} {value}" for key, value in fields.items())
        speaker = "" if is_fabula_logger(record.name) else f"[{record.name}] "
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname.lower():<8} {speaker}{record.getMessage()}"
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


def verbose_wanted(verbose: bool | None = None) -> bool:
    """Whether the libraries may speak: as asked, else FABULA_VERBOSE (set by `fabula --verbose`)."""
    if verbose is not None:
        return verbose
    return os.environ.get("FABULA_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


# Libraries that narrate their own start-up and every request at INFO; their warnings and errors still show.
CHATTY_LIBRARIES = (
    "httpx", "httpx2", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "gradio", "gradio_client", "huggingface_hub", "urllib3", "PIL",
    "fontTools",  # dozens of "GSUB pruned" lines for every font a book subsets
    "llama.cpp",  # the model loader's report (services/llm/llama_engine.py routes it here)
    "alembic",  # "setup plugin …" seven times in every process that imports it, and each migration applied
    "multipart", "python_multipart", "asyncio", "matplotlib", "filelock",
    "celery", "kombu",  # a worker's banner and connection news; its lost-broker and retry warnings still show
)
# Libraries whose warnings are advice to their own developers (a deprecation, "torchvision is not installed, using
# the PIL backend", diffusers' "There are modules in UNet2DConditionModel that should be kept in float32: []" that
# its own `load_ip_adapter` triggers): only their errors are shown. Python warnings (`warnings.warn`) arrive as
# `py.warnings` and are advice of the same kind.
ADVISORY_LIBRARIES = ("transformers", "diffusers", "torch", "accelerate", "py.warnings")

# transformers and diffusers give their root logger a handler of their own ("[transformers] …", or the bare message)
# and stop it propagating, when `<library>.utils.logging` is first imported; Fabula takes their lines back then.
LIBRARY_LOGGING_MODULES = ("transformers.utils.logging", "diffusers.utils.logging")
_libraries_verbose = False  # the latest `configure_logging`'s choice, for a library imported after it


def configure_logging(level: str = "INFO", log_format: str | None = None, verbose: bool | None = None) -> None:
    """Send log lines to stderr (JSON or human, `chosen_format`) and quiet the libraries' chatter unless `verbose`
    (`verbose_wanted`); safe to call more than once.

    Python warnings (torch's, diffusers') go through logging too, so they follow the same levels.
    """
    global _libraries_verbose
    root = logging.getLogger()
    formatter_type = HumanFormatter if chosen_format(log_format) == "human" else JsonFormatter
    if not any(type(handler.formatter) is formatter_type for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter_type())
        root.handlers = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    _libraries_verbose = verbose_wanted(verbose)
    # Verbose: the libraries' INFO lines (their DEBUG ones too when Fabula logs at DEBUG).
    verbose_level = min(root.level, logging.INFO)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(verbose_level if _libraries_verbose else logging.WARNING)
    for name in ADVISORY_LIBRARIES:
        logging.getLogger(name).setLevel(verbose_level if _libraries_verbose else logging.ERROR)
    for module_name in LIBRARY_LOGGING_MODULES:
        if module_name in sys.modules:
            _adopt_library_logging(sys.modules[module_name])
        elif not any(isinstance(finder, _AfterImport) and finder.module_name == module_name for finder in sys.meta_path):
            sys.meta_path.insert(0, _AfterImport(module_name, _adopt_library_logging))


class ServerLogOptions(TypedDict):
    log_config: None
    log_level: str


def server_log_options(verbose: bool | None = None) -> ServerLogOptions:
    """`uvicorn.run`'s / `uvicorn.Config`'s logging options: its lines through Fabula's handler (uvicorn's own
    `log_config` prints them in its own format, `WARNING:  Invalid HTTP request received.`, JSON or not), and its
    start-up and access lines only when verbose."""
    return ServerLogOptions(log_config=None, log_level="info" if verbose_wanted(verbose) else "warning")


def _adopt_library_logging(library_logging: ModuleType) -> None:
    """Route a library's lines through Fabula's handler at Fabula's levels, and set its progress bars (loading
    weights) on or off: through the library's own logging API, which also keeps the library from setting them again."""
    library_logging.disable_default_handler()
    library_logging.enable_propagation()
    if _libraries_verbose:
        library_logging.set_verbosity(min(logging.getLogger().level, logging.INFO))
        library_logging.enable_progress_bar()
    else:
        library_logging.set_verbosity_error()
        library_logging.disable_progress_bar()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then(module)` as soon as `module_name` has been imported, once: the libraries above set their logging
    up on import, and importing them just to set it (5 s for diffusers, which loads torch) would slow every process."""

    def __init__(self, module_name: str, then: Callable[[ModuleType], None]) -> None:
        self.module_name = module_name
        self.then = then

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenLoader(spec.loader, self.then)
                return spec
        return None


class _ThenLoader(importlib.abc.Loader):
    """The module's own loader, then `then(module)`; the module keeps its own loader afterwards."""

    def __init__(self, loader: importlib.abc.Loader, then: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.then = then

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.then(module)


def log_fields(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    """Log `message` with structured key/value fields."""
    logger.log(level, message, extra={"fields": fields})

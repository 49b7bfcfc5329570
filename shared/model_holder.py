"""Load a model once, in the background, and say whether it is ready.

The HTTP server answers `/healthz` at once and `/readyz` with 503 until the engine is loaded (or says why it
failed); a model request before then gets a 503 that says the model is still loading. An engine that must be
started before it serves (one that batches inside itself) is started by the `on_loaded` hook the service frame
hands to `start`, before any request can see it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from shared.errors import FabulaError, ModelNotReady

logger = logging.getLogger(__name__)

# transformers and diffusers initialise weights under process-wide patches (meta-device contexts), so two models
# loading at once in one process (the tiny profile runs all three services in-process) can corrupt each other.
_LOAD_LOCK = threading.Lock()


class EngineInfo(BaseModel):
    model: str
    device: str
    dtype: str
    extra: dict[str, str | int | float | bool | None] = {}


class Engine(Protocol):
    def info(self) -> EngineInfo: ...


EngineT = TypeVar("EngineT", bound=Engine)


class ModelHolder(Generic[EngineT]):
    def __init__(self, loader: Callable[[], EngineT], *, name: str) -> None:
        self._loader = loader
        self.name = name
        self.engine: EngineT | None = None
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_loaded: Callable[[EngineT], None] | None = None) -> None:
        """Load in a background thread; `on_loaded(engine)` runs there before the engine is published."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, args=(on_loaded,), name=f"load-{self.name}", daemon=True)
            self._thread.start()

    def _load(self, on_loaded: Callable[[EngineT], None] | None) -> None:
        started = time.perf_counter()
        try:
            with _LOAD_LOCK:  # starting an engine may set process-wide torch state too (its thread count)
                engine = self._loader()
                if on_loaded is not None:
                    on_loaded(engine)
            self.engine = engine
            self.load_seconds = time.perf_counter() - started
            logger.info("model loaded", extra={"fields": {"service": self.name, "seconds": round(self.load_seconds, 3)}})
        except FabulaError as exc:
            self.error = exc.message
            logger.error("model failed to load", extra={"fields": {"service": self.name, "error": exc.message}})
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and logged with the traceback
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("model failed to load", extra={"fields": {"service": self.name}})
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout) and self.engine is not None

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def require(self) -> EngineT:
        if self.engine is not None:
            return self.engine
        if self.error is not None:
            raise ModelNotReady(f"The {self.name} model failed to load: {self.error}")
        raise ModelNotReady(f"The {self.name} model is still loading; try again in a few seconds.")

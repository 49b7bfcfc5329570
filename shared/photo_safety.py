"""The upload check: every photo (and brand logo) a reader gives Fabula passes the open_nsfw image safety classifier
before a book is started, so a refused photo leaves no job, no file and no half-made book behind.

The web app calls `refuse_unsafe_photo` on the picture it has just decoded (`webapp.jobs.stories`), which every way
in goes through: the REST API, the studio page and `fabula story`. `check_photo` does the same from the raw bytes,
for the command line to call before it starts any service. FABULA_PHOTO_CHECK turns the check off, and
FABULA_SAFETY_THRESHOLD (shared with the illustrate service's open_nsfw) sets the score from which a photo is refused.

The classifier loads on the first upload of the process (about 0.1 s), not at start-up, so a process that never
receives a photo (a worker, `fabula resume`) never loads it.
"""

from __future__ import annotations

import logging

from PIL import Image

from shared.errors import InvalidRequest
from shared.images import load_image
from shared.open_nsfw import is_flagged, shared_open_nsfw
from shared.settings import Settings

logger = logging.getLogger(__name__)


class PhotoNotAllowed(InvalidRequest):
    """The image safety classifier refused an uploaded picture (HTTP 400)."""

    error_type = "photo_not_allowed"


def refuse_unsafe_photo(image: Image.Image, settings: Settings, *, param: str = "photo") -> None:
    """Raise `PhotoNotAllowed` when the decoded upload `image` scores at or above FABULA_SAFETY_THRESHOLD.

    Blocking (about 20 ms of CPU): call it off the event loop."""
    if not settings.photo_check:
        return
    score = shared_open_nsfw().scores([image])[0]
    threshold = settings.safety_threshold
    if not is_flagged(score, threshold):
        return
    logger.warning("an upload was refused by the image safety check", extra={"fields": {"param": param, "score": round(score, 4), "threshold": threshold}})
    raise PhotoNotAllowed(
        f"This {param} was refused by the image safety check (open_nsfw score {score:.3g} ≥ {threshold:g}, FABULA_SAFETY_THRESHOLD): "
        f"Fabula makes books only from {param}s that are safe for all ages.",
        param=param,
    )


def check_photo(data: bytes, settings: Settings, *, param: str = "photo") -> None:
    """Decode an upload as the web app does and refuse it as the web app would: `InvalidImage` / `PayloadTooLarge`
    for a file Fabula cannot use, `PhotoNotAllowed` for one the safety check refuses. For callers that hold only bytes
    and want the answer before any work starts (the command line)."""
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param=param)
    refuse_unsafe_photo(image, settings, param=param)

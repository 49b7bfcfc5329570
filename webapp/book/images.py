"""Pictures for the book: decoded safely, embedded at print resolution without bloating the PDF.

Illustrations are embedded as JPEG (a tenth of the size of a lossless copy of a painted picture), downscaled
only when they hold more pixels than 300 dpi at their printed size. The brand logo keeps its transparency.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps
from reportlab.lib.utils import ImageReader

from shared.errors import InvalidImage
from shared.images import load_image
from webapp.book.content import MAX_IMAGE_BYTES

PRINT_DPI = 300
MAX_IMAGE_PIXELS = 40_000_000
JPEG_QUALITY = 92


@dataclass(frozen=True)
class BookImage:
    image: Image.Image  # RGB, or RGBA for a logo

    @property
    def aspect(self) -> float:
        """Width divided by height."""
        return self.image.width / self.image.height

    def fit(self, max_width: float, max_height: float) -> tuple[float, float]:
        """The largest printed size (points) with this picture's proportions inside the box."""
        scale = min(max_width / self.image.width, max_height / self.image.height)
        return self.image.width * scale, self.image.height * scale

    def embedded_size(self, width: float, height: float) -> tuple[int, int]:
        """The pixels embedded for a printed size of `width` × `height` points: the picture's own, or fewer when it
        has more than 300 dpi there (rounded up, so a picture that has the pixels keeps at least 300 dpi)."""
        target = (max(1, math.ceil(width / 72 * PRINT_DPI)), max(1, math.ceil(height / 72 * PRINT_DPI)))
        if self.image.width > target[0] or self.image.height > target[1]:
            return target
        return self.image.size

    def reader(self, width: float, height: float) -> ImageReader:
        """The picture to embed for a printed size of `width` × `height` points."""
        target = self.embedded_size(width, height)
        image = self.image
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        if image.mode == "RGBA":
            return ImageReader(image)
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        buffer.seek(0)
        return ImageReader(buffer)


def decode_picture(data: bytes, param: str) -> BookImage:
    """An illustration or cover, upright RGB; `InvalidImage` names `param` when it cannot be read."""
    return BookImage(load_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS, param=param))


def decode_logo(data: bytes, param: str = "brand.logo_png") -> BookImage:
    """A logo with its transparency kept (validated by the same rules as every upload first)."""
    load_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS, param=param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            opened.seek(0)
            image = ImageOps.exif_transpose(opened).convert("RGBA")
    except Exception:  # noqa: BLE001 - already validated; any failure here is a damaged file all the same
        raise InvalidImage(f"The image `{param}` is damaged and could not be read.", param=param) from None
    if image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    return BookImage(image)

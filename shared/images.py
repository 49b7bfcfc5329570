"""Reading untrusted image uploads safely, and encoding images for the wire.

One function decides what Fabula accepts, so the services and the web app give the same answers:
non-images, empty and truncated files and decompression bombs are refused with a message that names the rule;
animated images give their first frame, alpha is flattened onto white, EXIF rotation is applied.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import InvalidImage, PayloadTooLarge

logger = logging.getLogger(__name__)

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}


def check_upload_size(size: int, *, max_bytes: int, param: str = "image") -> None:
    if size == 0:
        raise InvalidImage(f"The uploaded file `{param}` is empty (0 bytes). Choose a photo (JPEG, PNG, WebP or GIF).", param=param)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"The uploaded file `{param}` is {size:,} bytes; the limit is {max_bytes:,} bytes (FABULA_MAX_UPLOAD_BYTES).",
            param=param,
        )


def load_image(data: bytes, *, max_bytes: int, max_pixels: int, param: str = "image") -> Image.Image:
    """Decode an uploaded image into an upright RGB picture, or raise `InvalidImage` / `PayloadTooLarge`."""
    check_upload_size(len(data), max_bytes=max_bytes, param=param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"The uploaded file `{param}` is not an image Fabula can read. Use a JPEG, PNG, WebP or GIF photo.", param=param
        ) from None
    except Image.DecompressionBombError:
        # PIL refuses more than twice its own MAX_IMAGE_PIXELS before Fabula's own limit is consulted.
        limit = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else max_pixels
        raise PayloadTooLarge(
            f"The image `{param}` has too many pixels; the limit is {limit:,} pixels (FABULA_MAX_IMAGE_PIXELS).", param=param
        ) from None
    except Exception:  # noqa: BLE001 - PIL raises many kinds on hostile headers
        raise InvalidImage(f"The uploaded file `{param}` is damaged and could not be read as an image.", param=param) from None

    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(
            f"The image format {image.format or 'unknown'} of `{param}` is not supported. Use JPEG, PNG, WebP or GIF.", param=param
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"The image `{param}` has no pixels ({width}×{height}).", param=param)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image `{param}` is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels "
            f"(FABULA_MAX_IMAGE_PIXELS). Resize it and try again.",
            param=param,
        )
    try:
        image.seek(0)  # animated images: the first frame
        image.load()
    except Exception:  # noqa: BLE001 - truncated or corrupt data shows up only when decoding
        raise InvalidImage(f"The image `{param}` is truncated or corrupt; only part of the file arrived. Upload it again.", param=param) from None
    return flatten_to_rgb(upright(image))


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a photo whose EXIF block is malformed is kept as it was stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost the user their photo
        logger.warning("ignored a malformed EXIF orientation")
        return image


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB on a white background, whatever the mode (palette, LA, RGBA, CMYK, 16-bit)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode == "I;16" or image.mode == "I":
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_b64_png(image: Image.Image) -> str:
    return base64.b64encode(to_png_bytes(image)).decode("ascii")


def from_b64_png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image

"""QR codes for a book's download link: error correction M, the standard 4-module quiet zone.

The PDF draws the code as vector squares (`qr_modules`), sharp at any print size; `qr_png` gives the same
code as an image for the web page.
"""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage

QUIET_ZONE = 4


def _code(url: str, box_size: int) -> qrcode.QRCode:
    if not url:
        raise ValueError("`url` for a QR code must not be empty")
    if box_size < 1:
        raise ValueError(f"`box_size` must be at least 1 pixel per module; got {box_size}")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=QUIET_ZONE)
    code.add_data(url)
    code.make(fit=True)
    return code


def qr_png(url: str, box_size: int = 10) -> bytes:
    """A black-on-white PNG of the QR code for `url`, `box_size` pixels per module, quiet zone included."""
    image = _code(url, box_size).make_image(image_factory=PilImage, fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def qr_modules(url: str) -> list[list[bool]]:
    """The code's modules, row by row from the top (True = dark), quiet zone included."""
    return [list(row) for row in _code(url, 1).get_matrix()]

"""`shared.images.load_image`: what an upload must be, and how accepted images are normalised (pixel-level)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from shared.errors import InvalidImage, PayloadTooLarge
from shared.images import check_upload_size, from_b64_png, load_image, to_b64_png

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 40_000_000}
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG of width×height zeros: a few kilobytes that would decode to a huge picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row * 100) for _ in range(height // 100)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def color_near(pixel: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(channel - target) <= tolerance for channel, target in zip(pixel, expected, strict=True))


def test_jpeg_with_exif_orientation_6_comes_back_upright() -> None:
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (20, 0, 40, 20))  # stored: red left, blue right; orientation 6 turns it 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95), **LIMITS)
    assert image.size == (20, 40)
    assert color_near(image.getpixel((10, 5)), RED)
    assert color_near(image.getpixel((10, 35)), BLUE)


def test_rgba_png_is_flattened_onto_white() -> None:
    picture = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    picture.paste((255, 0, 0, 255), (0, 0, 8, 16))
    picture.paste((0, 0, 255, 128), (8, 0, 16, 4))
    image = load_image(encode(picture, "PNG"), **LIMITS)
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == RED
    assert image.getpixel((12, 12)) == WHITE
    assert color_near(image.getpixel((12, 2)), (127, 127, 255), tolerance=2)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), color) for color in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    image = load_image(data, **LIMITS)
    assert image.mode == "RGB" and image.size == (12, 12)
    assert image.getpixel((6, 6)) == RED


def test_palette_png_with_transparency_is_flattened_onto_white() -> None:
    picture = Image.new("P", (8, 8), 0)
    picture.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    picture.paste(1, (0, 0, 4, 8))
    image = load_image(encode(picture, "PNG", transparency=0), **LIMITS)
    assert image.getpixel((1, 1)) == RED
    assert image.getpixel((6, 6)) == WHITE


@pytest.mark.parametrize("mode", ["L", "LA", "1", "CMYK", "I;16"])
def test_other_modes_become_rgb(mode: str) -> None:
    image_format = "JPEG" if mode == "CMYK" else "PNG"
    image = load_image(encode(Image.new(mode, (8, 8)), image_format), **LIMITS)
    assert image.mode == "RGB" and image.size == (8, 8)


def test_zero_byte_upload_is_refused() -> None:
    with pytest.raises(InvalidImage, match="empty") as caught:
        load_image(b"", **LIMITS)
    assert caught.value.param == "image"


def test_text_file_is_refused() -> None:
    with pytest.raises(InvalidImage, match="not an image") as caught:
        load_image(b"Once upon a time there was a photo that was really a text file.\n", **LIMITS, param="photo")
    assert caught.value.param == "photo"


def test_truncated_jpeg_is_refused(photo_bytes: bytes) -> None:
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        load_image(photo_bytes[: len(photo_bytes) // 2], **LIMITS)


def test_unsupported_format_is_refused() -> None:
    with pytest.raises(InvalidImage, match="ICO"):
        load_image(encode(Image.new("RGB", (16, 16)), "ICO"), **LIMITS)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = png_bomb(20_000, 20_000)
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLarge, match="too many pixels") as caught:
        load_image(data, **LIMITS)
    assert caught.value.param == "image"


def test_image_over_the_pixel_limit_names_the_setting() -> None:
    with pytest.raises(PayloadTooLarge, match="FABULA_MAX_IMAGE_PIXELS") as caught:
        load_image(png_bomb(8_000, 6_000), max_bytes=1_000_000, max_pixels=40_000_000)
    assert "8000×6000" in caught.value.message


def test_upload_over_the_byte_limit_names_the_setting() -> None:
    with pytest.raises(PayloadTooLarge, match="FABULA_MAX_UPLOAD_BYTES"):
        check_upload_size(2_000, max_bytes=1_000)
    check_upload_size(1_000, max_bytes=1_000)


def test_real_photo_decodes_and_round_trips_through_base64(photo_bytes: bytes) -> None:
    image = load_image(photo_bytes, **LIMITS)
    assert image.mode == "RGB" and min(image.size) > 64
    assert from_b64_png(to_b64_png(image)).tobytes() == image.tobytes()

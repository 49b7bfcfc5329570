"""The calm picture that stands in for one the safety classifier flagged.

A book page must never show flagged pixels, and a black square reads as a broken page. This is a soft dusk
sky over two rolling hills with a pale moon: plainly drawn on purpose, quiet enough for a children's book, and
the same for every page of a given size, so a reader sees it as "this picture was left out".
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

SKY_TOP = (214, 226, 240)
SKY_BOTTOM = (247, 233, 222)
MOON = (255, 250, 236)
FAR_HILL = (196, 214, 200)
NEAR_HILL = (168, 196, 178)


def calm_placeholder(width: int, height: int) -> Image.Image:
    """An RGB picture of `width` × `height`: a pastel gradient sky, a soft moon, two hills."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a placeholder needs a positive size, not {width}x{height}")
    picture = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(picture)
    for row in range(height):
        share = row / max(height - 1, 1)
        draw.line([(0, row), (width, row)], fill=_blend(SKY_TOP, SKY_BOTTOM, share))

    glow = Image.new("L", (width, height), 0)
    radius = max(2, min(width, height) // 9)
    centre = (int(width * 0.72), int(height * 0.28))
    ImageDraw.Draw(glow).ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=255
    )
    glow = glow.filter(ImageFilter.GaussianBlur(max(1, radius // 3)))
    picture.paste(Image.new("RGB", (width, height), MOON), mask=glow)

    draw = ImageDraw.Draw(picture)
    draw.ellipse([-width * 0.3, height * 0.62, width * 0.8, height * 1.5], fill=FAR_HILL)
    draw.ellipse([width * 0.25, height * 0.7, width * 1.4, height * 1.6], fill=NEAR_HILL)
    return picture.filter(ImageFilter.SMOOTH)


def _blend(top: tuple[int, int, int], bottom: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    return tuple(round(a + (b - a) * share) for a, b in zip(top, bottom, strict=True))  # type: ignore[return-value]

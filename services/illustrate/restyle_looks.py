"""The looks a photo can be restyled into, with OpenCV and no weights: each takes a framed photo and gives a picture.

Every look works on a BGR `uint8` array (OpenCV's channel order: `pencilSketch` and `stylization` convert to
YCrCb or Lab inside and assume it) and returns one of the same size. Whatever a look varies (paper grain, pixel
size) it draws from the `numpy` generator it is given, so one seed gives one picture. Sizes that matter (filter
windows, line widths) follow the picture's size, so a 256² picture and a 1024² one look alike.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Look = Callable[[np.ndarray, np.random.Generator], np.ndarray]

PALETTE_SAMPLES = 4096
PALETTE_ROUNDS = 8
# BGR weights of luminance (ITU-R BT.601, as OpenCV's grey conversion uses).
LUMINANCE = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def watercolor(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft washes (OpenCV's stylization), lightened as if the paper shows through, on textured paper."""
    washed = cv2.stylization(picture, sigma_s=60, sigma_r=0.45).astype(np.float32)
    washed = washed * 0.85 + 255 * 0.15
    return _to_uint8(washed * paper_texture(picture.shape[:2], rng, blotches=0.05, grain=0.015)[..., None])


def comic(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat colours from a small palette over smoothed shapes, vivid, with dark ink lines along the edges."""
    smooth = _smoothed(picture, passes=2)
    flat = _saturated(posterised(smooth, colours=8), 1.3)
    return _to_uint8(flat.astype(np.float32) * (ink_lines(picture, strength=5) / 255.0)[..., None])


def anime(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cel shading: smooth shapes lit in three bands of brightness, brighter colours, thin dark outlines.

    The bands are cut in Lab lightness, so colour stays where it was (in HSV, boosting near-black pixels'
    saturation gives them random hues)."""
    smooth = _smoothed(picture, passes=3)
    lab = cv2.cvtColor(smooth, cv2.COLOR_BGR2LAB).astype(np.float32)
    bands = np.array([0.45, 0.72, 0.92], dtype=np.float32) * 255
    lab[..., 0] = bands[np.digitize(lab[..., 0], [95, 170])]
    lab[..., 1:] = 128 + (lab[..., 1:] - 128) * 1.35
    shaded = cv2.cvtColor(_to_uint8(lab), cv2.COLOR_LAB2BGR).astype(np.float32)
    grey = cv2.GaussianBlur(cv2.cvtColor(smooth, cv2.COLOR_BGR2GRAY), (0, 0), _scaled(picture, 1.5))
    outline = cv2.Canny(grey, 30, 90) > 0  # the shapes' edges, not the texture inside them (fur, grass)
    shaded[outline] *= 0.3
    return _to_uint8(shaded)


def claymation(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rounded plasticine shapes: smooth, saturated colour, lit from the top left so every shape bulges."""
    smooth = cv2.edgePreservingFilter(picture, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.5)
    flat = _saturated(_smoothed(smooth, passes=2), 1.2).astype(np.float32)
    height = cv2.GaussianBlur(cv2.cvtColor(smooth, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0, (0, 0), _scaled(picture, 4.0))
    slope_x = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
    slope_y = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    light = -(slope_x + slope_y) * _scaled(picture, 4.0)
    shading = np.clip(1.0 + light, 0.7, 1.3)
    highlight = np.clip(light - 0.2, 0, 1) * 40
    return _to_uint8(flat * shading[..., None] + highlight[..., None])


def pixel_art(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 16-colour picture some 48 to 80 big pixels across (the count drawn from the seed), drawn up crisply."""
    height, width = picture.shape[:2]
    across = int(rng.integers(48, 81))
    small_size = (max(8, round(across * width / max(width, height))), max(8, round(across * height / max(width, height))))
    small = cv2.resize(_saturated(picture, 1.25), small_size, interpolation=cv2.INTER_AREA)
    return cv2.resize(posterised(small, colours=16), (width, height), interpolation=cv2.INTER_NEAREST)


def photographic(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cinematic grade: crisper detail, shadows toward teal and highlights toward amber, the edges out of focus."""
    height, width = picture.shape[:2]
    crisp = cv2.detailEnhance(picture, sigma_s=10, sigma_r=0.15).astype(np.float32)
    graded = crisp * 0.6 + picture.astype(np.float32) * 0.4
    luminance = (graded @ LUMINANCE / 255.0)[..., None]
    graded += (1 - luminance) * np.array([10, 6, -8], dtype=np.float32) + luminance * np.array([-10, 2, 10], dtype=np.float32)
    focus_x, focus_y = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot((columns - focus_x) / width, (rows - focus_y) / height)
    sharpness = np.clip(1.6 - distance * 2.4, 0, 1)[..., None]
    blurred = cv2.GaussianBlur(graded, (0, 0), _scaled(picture, 5.0))
    return _to_uint8(graded * sharpness + blurred * (1 - sharpness))


def line_art(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colouring-book page: the edges of the smoothed shapes as clean, thick black outlines on white."""
    smooth = cv2.edgePreservingFilter(_smoothed(picture, passes=3), flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
    strokes = (ink_lines(smooth, strength=6, window_at_512=15, blur_at_512=5) == 0).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    kept = stats[:, cv2.CC_STAT_AREA] >= max(8, picture.shape[0] * picture.shape[1] // 4000)  # specks go
    kept[0] = False  # the background
    width = max(1, round(_scaled(picture, 1.0)))
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width - 1, 2 * width - 1))
    outlines = cv2.dilate(kept[labels].astype(np.uint8), pen)
    page = cv2.GaussianBlur(np.where(outlines > 0, 20, 255).astype(np.uint8), (3, 3), 0)  # antialiased edges
    return cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)


def pencil(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured pencil: OpenCV's pencil sketch in colour, its strokes deepened by the grey sketch, on paper."""
    grey, coloured = cv2.pencilSketch(picture, sigma_s=60, sigma_r=0.07, shade_factor=0.06)
    drawn = coloured.astype(np.float32) * (0.55 + 0.45 * grey.astype(np.float32)[..., None] / 255.0)
    return _to_uint8(drawn * paper_texture(picture.shape[:2], rng, blotches=0.02, grain=0.02)[..., None])


def paper_cut(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Five flat layers of coloured paper, cut along smooth edges, each casting a soft shadow on the ones behind."""
    height, width = picture.shape[:2]
    blurred = cv2.GaussianBlur(picture, (0, 0), _scaled(picture, 2.5))
    labels, palette = palette_labels(blurred, colours=5)
    palette = _saturated(palette[None].astype(np.uint8), 1.2)[0].astype(np.float32) * 0.85 + 255 * 0.15
    cut = _odd(_scaled(picture, 9))
    offset = max(1, round(_scaled(picture, 3)))
    shadow_blur = _scaled(picture, 3)
    # Lighter paper lies behind, darker paper on top of it (most photos read as dark shapes on a lighter ground).
    order = np.argsort(-(palette @ LUMINANCE))
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = palette[order[0]]
    for index in order[1:]:
        mask = cv2.medianBlur((labels == index).astype(np.uint8) * 255, cut).astype(np.float32) / 255.0
        shifted = np.zeros_like(mask)
        shifted[offset:, offset:] = mask[:-offset, :-offset]
        shadow = cv2.GaussianBlur(shifted, (0, 0), shadow_blur)
        canvas *= (1 - 0.35 * shadow)[..., None]
        canvas = canvas * (1 - mask[..., None]) + palette[index] * mask[..., None]
    return _to_uint8(canvas * paper_texture((height, width), rng, blotches=0.02, grain=0.03)[..., None])


def palette_labels(picture: np.ndarray, *, colours: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's index into a palette of `colours` BGR colours found by k-means, and the palette.

    k-means runs on an even sample of the pixels from centres spread over the brightness range, so the same
    picture always gives the same palette (OpenCV's `kmeans` draws from its global generator).
    """
    pixels = picture.reshape(-1, 3).astype(np.float32)
    sample = pixels[:: max(1, len(pixels) // PALETTE_SAMPLES)]
    by_brightness = sample[np.argsort(sample @ LUMINANCE, kind="stable")]
    centres = np.stack([chunk.mean(axis=0) for chunk in np.array_split(by_brightness, colours)])
    for _ in range(PALETTE_ROUNDS):
        nearest = _nearest(sample, centres)
        for index in range(colours):
            members = sample[nearest == index]
            if len(members):
                centres[index] = members.mean(axis=0)
    return _nearest(pixels, centres).reshape(picture.shape[:2]), centres


def posterised(picture: np.ndarray, *, colours: int) -> np.ndarray:
    """The picture in a k-means palette of `colours` colours."""
    labels, palette = palette_labels(picture, colours=colours)
    return np.clip(palette, 0, 255).astype(np.uint8)[labels]


def ink_lines(picture: np.ndarray, *, strength: int, window_at_512: float = 9, blur_at_512: float = 3.5) -> np.ndarray:
    """A grey `uint8` mask, 255 on flat areas and 0 on the picture's edges: an adaptive threshold (over a window of
    `window_at_512` pixels, `strength` below the window's mean) of the median-blurred grey picture."""
    grey = cv2.medianBlur(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY), _odd(_scaled(picture, blur_at_512)))
    window = _odd(max(5.0, _scaled(picture, window_at_512)))
    return cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, window, strength)


def paper_texture(shape: tuple[int, ...], rng: np.random.Generator, *, blotches: float, grain: float) -> np.ndarray:
    """A float multiplier around 1: broad soft blotches (pigment pooling, uneven paper) and fine fibre grain."""
    height, width = shape[0], shape[1]
    coarse = rng.standard_normal((max(2, height // 24), max(2, width // 24))).astype(np.float32)
    broad = cv2.GaussianBlur(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 3)
    fine = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 0.8)
    return 1.0 + blotches * broad / max(float(broad.std()), 1e-6) + grain * fine / max(float(fine.std()), 1e-6)


def _smoothed(picture: np.ndarray, *, passes: int) -> np.ndarray:
    """Bilateral filtering: flat colour inside shapes, edges kept."""
    diameter = _odd(max(5.0, _scaled(picture, 9)))
    smooth = picture
    for _ in range(passes):
        smooth = cv2.bilateralFilter(smooth, diameter, 60, diameter)
    return smooth


def _saturated(picture: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(picture, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def _nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = (pixels * pixels).sum(axis=1, keepdims=True) - 2 * pixels @ centres.T + (centres * centres).sum(axis=1)
    return distances.argmin(axis=1)


def _scaled(picture: np.ndarray, size_at_512: float) -> float:
    """A length chosen for a 512-pixel picture, for this picture's shorter side."""
    return size_at_512 * min(picture.shape[:2]) / 512


def _odd(value: float) -> int:
    return max(3, int(round(value)) // 2 * 2 + 1)


def _to_uint8(picture: np.ndarray) -> np.ndarray:
    return np.clip(picture, 0, 255).astype(np.uint8)

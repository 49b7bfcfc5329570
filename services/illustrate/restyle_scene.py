"""What makes one page's restyled photo differ from the next: its framing (from the seed) and its colour mood (from
the scene's words), and a vignette.

Framing zooms into a part of the photo, turns it a few degrees and sometimes mirrors it, always inside the photo
(no empty corners). The mood grades the colours as the scene's first mood word asks: night is blue and dark,
sunset warm, a forest green, the sea teal, snow pale, fire orange. All of it is drawn from a generator the caller
seeds, so the same seed, prompt and photo give the same picture.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import cv2
import numpy as np

MAX_ZOOM = 1.3
MAX_TURN_DEGREES = 5.0
MIRROR_CHANCE = 0.5


@dataclass(frozen=True)
class Mood:
    """A colour grade: per-channel gains (red, green, blue), then brightness and saturation factors."""

    name: str
    gains: tuple[float, float, float]
    brightness: float = 1.0
    saturation: float = 1.0


NEUTRAL = Mood("neutral", (1.0, 1.0, 1.0))

# Scene words → mood. The mood of the word that comes first in the prompt wins (the scene leads a page's prompt).
MOOD_WORDS: dict[Mood, tuple[str, ...]] = {
    Mood("night", (0.7, 0.8, 1.15), brightness=0.72, saturation=0.8): (
        "night", "midnight", "moon", "moonlight", "starry", "stars", "bedtime", "asleep", "dark", "dream",
    ),
    Mood("sunset", (1.15, 0.96, 0.78), saturation=1.1): (
        "sunset", "sunrise", "dawn", "dusk", "evening", "autumn", "golden",
    ),
    Mood("forest", (0.9, 1.1, 0.88), saturation=1.05): (
        "forest", "woods", "garden", "jungle", "meadow", "grass", "tree", "trees", "leaves", "park", "spring",
    ),
    Mood("water", (0.72, 1.0, 1.12), saturation=1.1): (
        "sea", "ocean", "river", "lake", "pond", "rain", "beach", "wave", "waves", "underwater", "boat", "swim", "swimming",
    ),
    Mood("snow", (0.97, 1.0, 1.08), brightness=1.12, saturation=0.65): (
        "snow", "snowy", "winter", "ice", "icy", "frost", "frozen", "mountain", "mountains",
    ),
    Mood("fire", (1.22, 0.92, 0.68), saturation=1.15): (
        "fire", "campfire", "flame", "flames", "candle", "lantern", "dragon", "volcano",
    ),
    Mood("space", (0.85, 0.78, 1.18), brightness=0.85): ("space", "rocket", "planet", "planets", "galaxy", "astronaut"),
    Mood("sunny", (1.07, 1.03, 0.92), brightness=1.05, saturation=1.1): (
        "sun", "sunny", "summer", "morning", "picnic",
    ),
}
_MOOD_PATTERNS = [
    (mood, re.compile(r"\b(?:" + "|".join(re.escape(word) for word in words) + r")\b", re.IGNORECASE))
    for mood, words in MOOD_WORDS.items()
]


def scene_mood(prompt: str) -> Mood:
    """The mood of the first mood word in `prompt`, or `NEUTRAL` when it names none."""
    found = [(match.start(), mood) for mood, pattern in _MOOD_PATTERNS if (match := pattern.search(prompt))]
    return min(found, key=lambda item: item[0])[1] if found else NEUTRAL


def graded(picture: np.ndarray, mood: Mood) -> np.ndarray:
    """`picture` (BGR `uint8`) in `mood`'s colours."""
    if mood == NEUTRAL:
        return picture
    red, green, blue = mood.gains
    toned = picture.astype(np.float32) * np.array([blue, green, red], dtype=np.float32) * mood.brightness
    toned = np.clip(toned, 0, 255).astype(np.uint8)
    if mood.saturation == 1.0:
        return toned
    hsv = cv2.cvtColor(toned, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * mood.saturation, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def framed(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A `size` (width, height) view of `photo` (BGR): zoomed 1 to MAX_ZOOM times into a part drawn by `rng`,
    turned up to MAX_TURN_DEGREES either way, mirrored by chance; the whole view lies inside the photo."""
    width, height = size
    zoom = rng.uniform(1.0, MAX_ZOOM)
    turn = math.radians(rng.uniform(-MAX_TURN_DEGREES, MAX_TURN_DEGREES))
    mirror = rng.random() < MIRROR_CHANCE
    cos, sin = abs(math.cos(turn)), abs(math.sin(turn))
    photo_height, photo_width = photo.shape[:2]
    # The largest view of the picture's shape whose turned bounding box fits the photo, shrunk by the zoom.
    scale = min(photo_width / (width * cos + height * sin), photo_height / (width * sin + height * cos)) / zoom
    if scale > 1.0:  # a photo larger than the view: shrink it first (warpAffine alone would alias)
        photo = cv2.resize(photo, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_AREA)
        scale = 1.0
    photo_height, photo_width = photo.shape[:2]
    reach_x = (width * cos + height * sin) * scale / 2
    reach_y = (width * sin + height * cos) * scale / 2
    centre_x = rng.uniform(min(reach_x, photo_width / 2), max(photo_width - reach_x, photo_width / 2))
    centre_y = rng.uniform(min(reach_y, photo_height / 2), max(photo_height - reach_y, photo_height / 2))
    # Output pixel (u, v) reads the photo at centre + R(turn) · scale · (±(u - width/2), v - height/2).
    flip = -1.0 if mirror else 1.0
    a, b = math.cos(turn) * scale, math.sin(turn) * scale
    matrix = np.array(
        [
            [a * flip, -b, centre_x - a * flip * width / 2 + b * height / 2],
            [b * flip, a, centre_y - b * flip * width / 2 - a * height / 2],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        photo, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
    )


def vignetted(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Corners darkened by 15 to 35 per cent, around a centre drawn near the middle."""
    height, width = picture.shape[:2]
    strength = rng.uniform(0.15, 0.35)
    centre_x, centre_y = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    rows, columns = np.ogrid[0:height, 0:width]
    distance = np.hypot(columns / max(width - 1, 1) - centre_x, rows / max(height - 1, 1) - centre_y) / math.sqrt(0.5)
    falloff = 1.0 - strength * np.clip(distance, 0, 1) ** 2
    return np.clip(picture.astype(np.float32) * falloff[..., None].astype(np.float32), 0, 255).astype(np.uint8)

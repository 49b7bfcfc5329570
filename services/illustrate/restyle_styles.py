"""The restyler's presets, keyed by the book's style ids, and how a request's style is found.

A request names its style in the `style` field, which reaches the engine as the prompt's last clause (the
service appends it to the prompt for every model). When that clause is not a preset, the preset whose words
come last in the prompt wins (a book's picture prompt ends with its style's words: "..., soft watercolor
children's book illustration, gentle washes"); a prompt that names none gets `DEFAULT_STYLE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.illustrate import restyle_looks
from services.illustrate.restyle_looks import Look

DEFAULT_STYLE = "watercolor"


@dataclass(frozen=True)
class RestylePreset:
    """`look` turns the framed photo into the picture; `coloured` says whether the scene's colour mood and a
    vignette apply (a colouring-book page stays black on white); `blocky` keeps hard pixel edges when the picture
    is enlarged to the size asked for; `words` name the style in a prompt."""

    id: str
    look: Look
    summary: str
    words: tuple[str, ...]
    coloured: bool = True
    blocky: bool = False


PRESETS: dict[str, RestylePreset] = {
    preset.id: preset
    for preset in (
        RestylePreset(
            "watercolor", restyle_looks.watercolor, "soft washes on textured paper",
            words=("watercolor", "watercolour", "storybook"),
        ),
        RestylePreset(
            "comic", restyle_looks.comic, "flat vivid colours with dark ink lines",
            words=("comic", "cartoon", "halftone", "ink lines"),
        ),
        RestylePreset(
            "anime", restyle_looks.anime, "cel shading in three bands with thin outlines",
            words=("anime", "manga", "cel shading"),
        ),
        RestylePreset(
            "claymation", restyle_looks.claymation, "rounded plasticine shapes lit from the top left",
            words=("claymation", "plasticine", "clay"),
        ),
        RestylePreset(
            "pixel-art", restyle_looks.pixel_art, "16 colours, 48 to 80 big pixels across",
            words=("pixel art", "pixel-art", "16-bit", "pixels"), blocky=True,
        ),
        RestylePreset(
            "photographic", restyle_looks.photographic, "a cinematic grade with a shallow depth of field",
            words=("photographic", "photograph", "cinematic"),
        ),
        RestylePreset(
            "line-art", restyle_looks.line_art, "black outlines on white, a colouring-book page",
            words=("line art", "line-art", "colouring book", "coloring book", "outlines"), coloured=False,
        ),
        RestylePreset(
            "paper-cut", restyle_looks.paper_cut, "five layers of flat paper with soft shadows",
            words=("paper cut", "paper-cut", "cut-out", "collage"),
        ),
        RestylePreset(
            "pencil", restyle_looks.pencil, "a coloured pencil sketch on paper",
            words=("pencil", "sketch", "crayon"),
        ),
    )
}

_SEPARATORS = re.compile(r"[\s_]+")
_WORD_PATTERNS = [
    (preset, re.compile(r"\b(?:" + "|".join(re.escape(word) for word in preset.words) + r")\b", re.IGNORECASE))
    for preset in PRESETS.values()
]


def preset_named(name: str) -> RestylePreset | None:
    """The preset a style id names ("pixel-art", "Pixel art", "pixel_art"), or None."""
    return PRESETS.get(_SEPARATORS.sub("-", name.strip().casefold()))


def preset_for(prompt: str) -> RestylePreset:
    """The preset a prompt asks for: its last clause as a style id, else the preset whose words come last."""
    named = preset_named(prompt.rsplit(",", 1)[-1])
    if named is not None:
        return named
    found = [(match.end(), preset) for preset, pattern in _WORD_PATTERNS for match in pattern.finditer(prompt)]
    return max(found, key=lambda item: item[0])[1] if found else PRESETS[DEFAULT_STYLE]

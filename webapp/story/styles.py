"""Style presets: how each one is phrased for the image model, and what to steer away from.

Each prompt leads with the clause that carries its look and stays short (at most STYLE_MAX_TOKENS by
`webapp.story.clip_tokens.estimate_clip_tokens`), so a picture prompt keeps most of CLIP's 75 tokens for the
scene and the characters. Negations ("no shading") belong in `negative`: CLIP reads "no shading" as shading.
"""

from __future__ import annotations

from dataclasses import dataclass

STYLE_MAX_TOKENS = 20


@dataclass(frozen=True)
class StylePreset:
    id: str
    label: str
    prompt: str
    negative: str


_COMMON_NEGATIVE = "text, letters, watermark, signature, blurry, deformed hands, extra limbs, low quality"

STYLES: tuple[StylePreset, ...] = (
    StylePreset("watercolor", "Watercolor storybook",
                "soft watercolor children's book illustration, gentle washes, paper texture, warm light", _COMMON_NEGATIVE + ", photo, 3d render"),
    StylePreset("comic", "Comic book",
                "bold comic book panel, clean ink lines, flat vivid colors, halftone shading", _COMMON_NEGATIVE + ", photo"),
    StylePreset("anime", "Anime",
                "anime illustration, expressive eyes, cel shading, detailed background, studio quality", _COMMON_NEGATIVE + ", photo, 3d"),
    StylePreset("claymation", "Claymation",
                "claymation, plasticine figures, miniature set, studio lighting", _COMMON_NEGATIVE + ", drawing"),
    StylePreset("pixel-art", "Pixel art",
                "detailed 16-bit pixel art scene, limited palette, crisp pixels", _COMMON_NEGATIVE + ", blurry, smooth gradients, photo"),
    StylePreset("photographic", "Photographic",
                "cinematic photograph, natural light, shallow depth of field, realistic", _COMMON_NEGATIVE + ", cartoon, drawing"),
    StylePreset("line-art", "Colouring book line art",
                "black and white colouring book page, clean thick outlines, white background", _COMMON_NEGATIVE + ", color, shading, gray"),
    StylePreset("paper-cut", "Paper cut-out",
                "layered paper cut-out collage, craft paper textures, soft shadows", _COMMON_NEGATIVE + ", photo"),
)

STYLE_BY_ID = {style.id: style for style in STYLES}


def find_style(value: str) -> StylePreset:
    key = value.strip().casefold().replace("_", "-").replace(" ", "-")
    for style in STYLES:
        if key in (style.id, style.label.casefold().replace(" ", "-")):
            return style
    raise ValueError(f"unknown style {value!r}; use one of: " + ", ".join(style.id for style in STYLES))

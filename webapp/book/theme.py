"""The book's colours: the brand kit's when one is given, else the house colours, always kept readable.

Brand colours are used as given on the cover; on white pages a colour that would be hard to read (a pale
yellow heading) gives way to the other brand colour or to dark ink, judged by the WCAG contrast ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.lib.colors import Color, HexColor, white

from webapp.book.content import BookBrand

INK = HexColor("#262626")
MUTED = HexColor("#6B6B6B")
_DARK = HexColor("#1E1E1E")
_PALE_GREY = HexColor("#E4E4E4")


@dataclass(frozen=True)
class Theme:
    primary: Color  # cover background
    secondary: Color  # cover accents
    on_primary: Color  # text on the primary colour
    accent: Color  # headings and links on white pages
    badge: Color  # page-number discs and buttons on white pages
    on_badge: Color
    ink: Color = INK
    muted: Color = MUTED


def luminance(color: Color) -> float:
    """WCAG relative luminance."""

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(color.red) + 0.7152 * linear(color.green) + 0.0722 * linear(color.blue)


def contrast(first: Color, second: Color) -> float:
    """WCAG contrast ratio, from 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def readable_on(background: Color) -> Color:
    return _DARK if contrast(_DARK, background) > contrast(white, background) else white


def theme_for(brand: BookBrand | None) -> Theme:
    """Brand colours when a brand kit is given, else the house colours (deep blue and warm yellow)."""
    defaults = BookBrand.model_fields
    primary = HexColor(brand.primary_color if brand else defaults["primary_color"].default)
    secondary = HexColor(brand.secondary_color if brand else defaults["secondary_color"].default)
    accent = next((color for color in (primary, secondary) if contrast(color, white) >= 3), INK)
    badge = next((color for color in (secondary, primary) if contrast(color, white) >= 1.4), _PALE_GREY)
    return Theme(primary, secondary, readable_on(primary), accent, badge, readable_on(badge))

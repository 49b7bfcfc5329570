"""`render_book`: book content in, PDF bytes out. It reads font files and nothing else: no network, no clock.

The same content gives the same bytes (reportlab's invariant mode), so a book can be cached and re-served.
Fonts come from a `FontLibrary` (the machine's fonts by default); every script's text is embedded as font
subsets, Arabic and Hebrew run right to left, complex scripts are shaped, and text is drawn as plain text,
never parsed as markup.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from reportlab import rl_config
from reportlab.pdfgen.canvas import Canvas

from webapp.book.content import BookContent
from webapp.book.fonts import FontLibrary, default_font_library
from webapp.book.images import decode_logo, decode_picture
from webapp.book.pages import CREATOR, PAGE_SIZE, PageContext, draw_cover, draw_last_page, draw_story_page
from webapp.book.render_lock import RENDER_LOCK
from webapp.book.scripts import clean_text
from webapp.book.text_shaping import is_right_to_left_language
from webapp.book.theme import theme_for


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Write image and page streams as binary instead of ASCII85 (a quarter smaller); restored afterwards."""
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = previous


def render_book(content: BookContent, *, fonts: FontLibrary | None = None) -> bytes:
    """The book as a PDF: a cover, one page per story page, and a last page with the download QR code.

    The page count is `len(content.pages) + 2`. Raises `shared.errors.InvalidImage` (naming the field, e.g.
    `pages[2].image_png`) when a picture cannot be decoded.
    """
    library = fonts or default_font_library()
    theme = theme_for(content.brand)
    cover = decode_picture(content.cover_png, "cover_png") if content.cover_png else None
    logo = decode_logo(content.brand.logo_png) if content.brand and content.brand.logo_png else None
    originals = content.page_originals
    brand_name = content.brand.name if content.brand else None

    buffer = io.BytesIO()
    with RENDER_LOCK, _binary_streams():
        canvas = Canvas(buffer, pagesize=PAGE_SIZE, invariant=1, pageCompression=1, lang=content.language,
                        initialFontName=library.default_face().name)  # type: ignore[arg-type]  # types-reportlab: a float, wrongly
        canvas.setTitle(clean_text(content.title))
        canvas.setAuthor(clean_text(content.author))
        canvas.setSubject(clean_text(content.subject))
        canvas.setCreator(CREATOR)
        canvas.setKeywords(f"storybook, {content.language}")
        canvas.setViewerPreference("DisplayDocTitle", "true")
        if is_right_to_left_language(content.language):
            canvas.setViewerPreference("Direction", "R2L")
        context = PageContext(canvas, library, theme, content.language)

        draw_cover(context, content, cover, logo)
        canvas.showPage()
        for index, (page, original) in enumerate(zip(content.pages, originals, strict=True)):
            picture = decode_picture(page.image_png, f"pages[{index}].image_png") if page.image_png else None
            draw_story_page(context, page, original, picture, brand_name)
            canvas.showPage()
        draw_last_page(context, content, logo)
        canvas.showPage()
        canvas.save()
    return buffer.getvalue()

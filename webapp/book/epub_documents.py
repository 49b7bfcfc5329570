"""The EPUB's XHTML documents (cover, one per story page, the last page, the navigation) and its style sheet.

Pure string building: each function takes what it shows and returns a complete XHTML document. Every text is
escaped (`epub_text`); right-to-left books carry `dir="rtl"` on each document (EPUB forbids the CSS `direction`
property, so the attribute is the only way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib.colors import Color

from webapp.book.content import BookBrand
from webapp.book.epub_fonts import EmbeddedFont
from webapp.book.epub_text import SentenceSpan, spans_xhtml, xml_attribute, xml_lines, xml_text
from webapp.book.theme import Theme

ACTIVE_CLASS = "-epub-media-overlay-active"
STYLESHEET = "style.css"


@dataclass(frozen=True)
class DocumentFrame:
    """What every document of one book shares: its language and direction."""

    language: str
    right_to_left: bool

    def document(self, title: str, body: str, *, body_type: str = "") -> str:
        direction = ' dir="rtl"' if self.right_to_left else ""
        body_attributes = f' epub:type="{body_type}"' if body_type else ""
        language = xml_attribute(self.language)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
            f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" '
            f'lang="{language}" xml:lang="{language}"{direction}>\n'
            f'<head>\n<meta charset="UTF-8"/>\n<title>{xml_text(title)}</title>\n'
            f'<link rel="stylesheet" type="text/css" href="{STYLESHEET}"/>\n</head>\n'
            f"<body{body_attributes}>\n{body}\n</body>\n</html>\n"
        )


def _hex(color: Color) -> str:
    return "#" + color.hexval()[2:].upper()


def stylesheet(theme: Theme, fonts: Sequence[EmbeddedFont]) -> str:
    """The book's CSS: embedded faces, picture above text, the brand's colours, and the read-along highlight."""
    faces = "".join(f'@font-face {{ font-family: "{font.family}"; src: url("{font.href}"); }}\n' for font in fonts)
    families = ", ".join([f'"{font.family}"' for font in fonts] + ["sans-serif"])
    return (
        f"{faces}"
        f"body {{ font-family: {families}; margin: 0 4%; color: {_hex(theme.ink)}; line-height: 1.5; }}\n"
        "section { margin: 0; padding: 0; }\n"
        "figure { margin: 0.5em 0; text-align: center; }\n"
        "figure img { max-width: 100%; max-height: 70vh; }\n"
        f"h1 {{ color: {_hex(theme.accent)}; text-align: center; font-size: 1.8em; margin: 0.6em 0 0.2em; }}\n"
        ".original-title { text-align: center; font-style: italic; margin: 0; }\n"
        ".author, .brand, .number, .end-link { text-align: center; }\n"
        f".brand {{ color: {_hex(theme.accent)}; font-weight: bold; }}\n"
        ".text { font-size: 1.25em; margin: 0.6em 0; }\n"
        f".original {{ color: {_hex(theme.muted)}; font-style: italic; margin: 0.4em 0; }}\n"
        f".number {{ color: {_hex(theme.muted)}; font-size: 0.85em; }}\n"
        f".cta {{ display: inline-block; padding: 0.4em 1em; background-color: {_hex(theme.badge)}; "
        f"color: {_hex(theme.on_badge)}; text-decoration: none; border-radius: 0.4em; }}\n"
        ".logo img { max-width: 40%; }\n"
        f".{ACTIVE_CLASS} {{ background-color: #FFE58F; color: {_hex(theme.ink)}; }}\n"
    )


def cover_document(frame: DocumentFrame, *, title: str, title_spans: Sequence[SentenceSpan] | None,
                   original_title: str | None, author: str, image_href: str, brand_name: str | None) -> str:
    """The cover: its picture, the title (one span per narrated sentence when the title is narrated), the author."""
    heading = spans_xhtml(title_spans) if title_spans else xml_lines(title)
    parts = [
        '<section epub:type="cover" class="cover" id="cover">',
        f'<figure><img src="{xml_attribute(image_href)}" alt="{xml_attribute(title)}"/></figure>',
        f"<h1>{heading}</h1>",
    ]
    if original_title:
        parts.append(f'<p class="original-title" dir="auto">{xml_lines(original_title)}</p>')
    if author.strip():
        parts.append(f'<p class="author">{xml_lines(author)}</p>')
    if brand_name:
        parts.append(f'<p class="brand">{xml_lines(brand_name)}</p>')
    parts.append("</section>")
    return frame.document(title, "\n".join(parts))


def page_document(frame: DocumentFrame, *, title: str, number: int, spans: Sequence[SentenceSpan],
                  original_text: str | None, image_href: str | None, brand_name: str | None) -> str:
    """A story page: its picture, its text with one `<span id="s<page>-<n>">` per sentence, the original
    text of a bilingual book, and the page number (with the brand's name)."""
    parts = [f'<section class="page" id="page-{number}">']
    if image_href:
        parts.append(f'<figure><img src="{xml_attribute(image_href)}" alt=""/></figure>')
    parts.append(f'<p class="text">{spans_xhtml(spans)}</p>')
    if original_text and original_text.strip():
        parts.append(f'<p class="original" dir="auto">{xml_lines(original_text)}</p>')
    footer = f"{number} · {xml_text(brand_name)}" if brand_name else str(number)
    parts.append(f'<p class="number">{footer}</p>')
    parts.append("</section>")
    return frame.document(f"{title} — {number}", "\n".join(parts), body_type="bodymatter")


def end_document(frame: DocumentFrame, *, title: str, the_end: str, download_url: str, brand: BookBrand | None,
                 logo_href: str | None, pictures_note: str | None = None) -> str:
    """The last page: "The End", the brand's logo, message and call to action, the book's download link, and how
    its pictures were made when that needs saying."""
    parts = ['<section class="end">', f"<h1>{xml_text(the_end)}</h1>"]
    if brand is not None:
        if logo_href:
            parts.append(f'<p class="logo brand"><img src="{xml_attribute(logo_href)}" alt="{xml_attribute(brand.name)}"/></p>')
        if brand.message:
            parts.append(f'<p class="text brand-message">{xml_lines(brand.message)}</p>')
        if brand.cta_url:
            label = brand.cta_text or brand.name
            parts.append(f'<p class="end-link"><a class="cta" href="{xml_attribute(brand.cta_url)}">{xml_text(label)}</a></p>')
        parts.append(f'<p class="brand">{xml_lines(brand.name)}</p>')
    parts.append(f'<p class="end-link"><a href="{xml_attribute(download_url)}">{xml_text(download_url)}</a></p>')
    if pictures_note:
        parts.append(f'<p class="pictures-note" lang="en">{xml_text(pictures_note)}</p>')
    parts.append("</section>")
    return frame.document(f"{title} — {the_end}", "\n".join(parts), body_type="backmatter")


def nav_document(frame: DocumentFrame, *, title: str, entries: Sequence[tuple[str, str]]) -> str:
    """The navigation document: a table of contents of (href, label) entries, in reading order."""
    items = "\n".join(f'<li><a href="{xml_attribute(href)}">{xml_text(label)}</a></li>' for href, label in entries)
    body = f'<nav epub:type="toc" id="toc">\n<h1>{xml_text(title)}</h1>\n<ol>\n{items}\n</ol>\n</nav>'
    return frame.document(title, body)

"""The reader's HTML: a whole book as one plain page, readable without JavaScript, that reader.js turns into a
one-page-at-a-time reader.

Every piece of book text goes through `html.escape` and sits in a `<bdi>` or an element with its own `dir`, so
markup in a story stays text and a stray right-to-left override cannot reorder the reader's own words; the bidi
embedding, override and isolate characters themselves are dropped, as the PDF and the EPUB drop them. Sentence
times travel as `data-begin`/`data-end` attributes on each sentence's span: no inline script, so the page's
Content-Security-Policy can forbid it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape

from webapp.book.text_shaping import paragraph_is_right_to_left
from webapp.reader.labels import ReaderLabels, reader_labels
from webapp.reader.model import ReaderBook, ReaderPage
from webapp.reader.sentences import sentence_runs

AssetUrl = Callable[[str], str]

NOT_FOUND_TITLE = "This book is not here"
NOT_FOUND_TEXT = "There is no book at this link: it was deleted, has expired, or the link is mistyped."

_ICONS = {
    "previous": '<path d="M15.5 4.5 8 12l7.5 7.5"/>',
    "next": '<path d="M8.5 4.5 16 12l-7.5 7.5"/>',
    "play": '<path class="filled" d="M8 5.2v13.6a.8.8 0 0 0 1.2.7l10.6-6.8a.8.8 0 0 0 0-1.4L9.2 4.5A.8.8 0 0 0 8 5.2Z"/>',
    "pause": '<rect class="filled" x="6.5" y="5" width="4" height="14" rx="1"/><rect class="filled" x="13.5" y="5" width="4" height="14" rx="1"/>',
}


# U+202A–U+202E (embeddings and overrides) and U+2066–U+2069 (isolates): they let text reorder what follows it.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _text(value: str) -> str:
    return escape(_BIDI_CONTROLS.sub("", value), quote=True)


def _attribute(name: str, value: str) -> str:
    """` name="value"`, or nothing when `value` is empty."""
    return f' {name}="{_text(value)}"' if value else ""


def _icon(name: str) -> str:
    return f'<svg class="icon icon-{name}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{_ICONS[name]}</svg>'


def _head(title: str, language: str, direction: str, asset_url: AssetUrl) -> str:
    return (
        "<!doctype html>\n"
        f'<html lang="{_text(language)}" dir="{_text(direction)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">\n'
        '<meta name="color-scheme" content="light dark">\n<meta name="robots" content="noindex">\n'
        f"<title>{_text(title)}</title>\n"
        f'<link rel="icon" type="image/svg+xml" href="{_text(asset_url("icon.svg"))}">\n'
        f'<link rel="stylesheet" href="{_text(asset_url("reader.css"))}">\n'
    )


def _files(book: ReaderBook, labels: ReaderLabels) -> str:
    links = [("PDF", book.pdf_url, "application/pdf"), ("EPUB", book.epub_url, "application/epub+zip"),
             (labels.audiobook, book.audiobook_url, "")]
    items = "".join(
        f'<li><a class="file" href="{_text(url)}"{_attribute("type", kind)}>{_text(name)}</a></li>'
        for name, url, kind in links if url
    )
    return f'<nav class="files" aria-label="{_text(labels.files)}"><ul>{items}</ul></nav>'


def _cover(book: ReaderBook, labels: ReaderLabels) -> str:
    image = (
        f'<img class="cover-image" src="{_text(book.cover_url)}" alt="" decoding="async">' if book.cover_url else ""
    )
    author = f'<p class="book-author">{_text(labels.by)} <bdi>{_text(book.author)}</bdi></p>' if book.author.strip() else ""
    return (
        f'<section class="slide cover" id="cover" data-slide aria-label="{_text(labels.cover)}">'
        f'{image}<h1 class="book-title"><bdi>{_text(book.title)}</bdi></h1>{author}</section>\n'
    )


def _page_text(page: ReaderPage, language: str, book_direction: str) -> str:
    spans = []
    for run in sentence_runs(page.text, page.sentences):
        if run.sentence is None:
            spans.append(_text(run.text))
        else:
            spans.append(
                f'<span class="sentence" data-begin="{run.sentence.begin:.3f}" data-end="{run.sentence.end:.3f}">'
                f"{_text(run.text)}</span>"
            )
    right_to_left = book_direction == "rtl" or paragraph_is_right_to_left(page.text, language)
    direction = "rtl" if right_to_left else "ltr"
    return f'<p class="page-text" dir="{direction}">{"".join(spans)}</p>'


def _page(page: ReaderPage, index: int, total: int, book: ReaderBook, labels: ReaderLabels) -> str:
    slide_id = f"page-{index + 1}"
    long_label = labels.page.format(page=index + 1, total=total)
    short_label = labels.page_short.format(page=index + 1, total=total)
    picture = (
        f'<figure class="picture"><img src="{_text(page.image_url)}" alt="" decoding="async"'
        f'{_attribute("loading", "lazy" if index > 0 else "")}></figure>'
        if page.image_url else ""
    )
    if page.audio_url:
        sound = (
            f'<audio class="narration" controls preload="{"auto" if index == 0 else "none"}" src="{_text(page.audio_url)}">'
            f'<a href="{_text(page.audio_url)}">{_text(labels.play)}</a></audio>'
        )
    else:
        sound = f'<p class="no-audio">{_text(labels.no_audio)}</p>'
    return (
        f'<section class="slide page" id="{slide_id}" data-slide aria-labelledby="{slide_id}-label">'
        f'{picture}<div class="words"><h2 class="page-label" id="{slide_id}-label">'
        f'<span class="visually-hidden">{_text(long_label)}</span><span aria-hidden="true">{_text(short_label)}</span></h2>'
        f"{_page_text(page, book.language, book.direction)}{sound}</div></section>\n"
    )


def _controls(labels: ReaderLabels) -> str:
    return (
        f'<nav class="controls" id="controls" aria-label="{_text(labels.pages)}" hidden>'
        f'<button type="button" class="turn" id="previous-button" aria-label="{_text(labels.previous)}">{_icon("previous")}</button>'
        f'<button type="button" class="play" id="play-button" aria-label="{_text(labels.play)}">'
        f'{_icon("play")}{_icon("pause")}</button>'
        f'<button type="button" class="turn" id="next-button" aria-label="{_text(labels.next)}">{_icon("next")}</button>'
        "</nav>\n"
    )


def render_reader(book: ReaderBook, asset_url: AssetUrl) -> str:
    """The reader page for `book`; `asset_url(name)` gives the URL of a file in the reader's static folder."""
    labels = reader_labels(book.language)
    total = len(book.pages)
    data = " ".join(
        f'data-label-{name}="{_text(value)}"'
        for name, value in (("play", labels.play), ("pause", labels.pause), ("page", labels.page), ("cover", labels.cover))
    )
    pages = "".join(_page(page, index, total, book, labels) for index, page in enumerate(book.pages))
    return (
        _head(book.title, book.language, book.direction, asset_url)
        + f'<script src="{_text(asset_url("reader.js"))}" defer></script>\n</head>\n<body>\n'
        + f'<header class="bar"><p class="bar-title"><bdi>{_text(book.title)}</bdi></p>{_files(book, labels)}</header>\n'
        + f'<main class="reader" id="reader" data-reader {data}>\n{_cover(book, labels)}{pages}</main>\n'
        + _controls(labels)
        + '<p class="visually-hidden" id="announcer" aria-live="polite" aria-atomic="true"></p>\n'
        + "</body>\n</html>\n"
    )


def render_not_found(asset_url: AssetUrl) -> str:
    """The page an unknown, deleted or expired link gets: the reader's look, no script."""
    return (
        _head(NOT_FOUND_TITLE, "en", "ltr", asset_url)
        + "</head>\n<body>\n"
        + f'<main class="reader gone"><section class="slide cover"><h1 class="book-title">{_text(NOT_FOUND_TITLE)}</h1>'
        + f'<p class="book-author">{_text(NOT_FOUND_TEXT)}</p></section></main>\n'
        + "</body>\n</html>\n"
    )

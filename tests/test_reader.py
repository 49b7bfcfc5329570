"""The phone reader over real HTTP on loopback: the page holds the whole book, escapes what a story says, sends a
strict policy, answers unknown links with an HTML page, and serves only its own assets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, UTC

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from shared.server_thread import ServerThread
from webapp.book.narration import SpokenSentence
from webapp.reader import ReaderBook, ReaderPage, reader_router
from webapp.reader.sentences import sentence_runs

TOKEN = "Abc123_-" * 5 + "xyz"
HOSTILE_TOKEN = "Hostile_" * 4 + "0123456789a"
EXPIRED_TOKEN = "Expired_" * 4 + "0123456789a"
HOSTILE_TITLE = '</script><script>alert("title")</script> \u202egnp.exe'
HOSTILE_TEXT = 'She said "hi" & left. <img src=x onerror=alert(1)></script> \u202eReversed?'


def _book(token: str = TOKEN, **changes: object) -> ReaderBook:
    pages = [
        ReaderPage(
            number=1, text="Mira found a red kite.\nIt pulled her up the hill.", image_url="/media/1.png",
            audio_url="/media/1.mp3",
            sentences=[SpokenSentence(text="Mira found a red kite.", begin=0, end=1.4),
                       SpokenSentence(text="It pulled her up the hill.", begin=1.7, end=3.2)],
        ),
        ReaderPage(number=2, text="The wind sang in the grass.", image_url="/media/2.png", audio_url="/media/2.mp3",
                   sentences=[SpokenSentence(text="The wind sang in the grass.", begin=0, end=1.9)]),
        ReaderPage(number=3, text="At sunset they flew home.", image_url="/media/3.png"),
    ]
    values: dict[str, object] = {
        "token": token, "title": "Mira and the Kite", "language": "en", "author": "Ana", "cover_url": "/media/cover.png",
        "pages": pages, "pdf_url": f"/books/{token}.pdf",
    }
    values.update(changes)
    return ReaderBook.model_validate(values)


@pytest.fixture(scope="module")
def books() -> dict[str, ReaderBook]:
    return {
        TOKEN: _book(epub_url=f"/books/{TOKEN}.epub", audiobook_url=f"/books/{TOKEN}.m4b"),
        HOSTILE_TOKEN: _book(
            HOSTILE_TOKEN, title=HOSTILE_TITLE, author='"><b>x</b>',
            pages=[ReaderPage(number=1, text=HOSTILE_TEXT, image_url="https://pictures.example.org/1.png")],
        ),
        EXPIRED_TOKEN: _book(EXPIRED_TOKEN, expires_at=datetime.now(UTC) - timedelta(minutes=1)),
    }


@pytest.fixture(scope="module")
def looked_up() -> list[str]:
    return []


@pytest.fixture(scope="module")
def reader_url(books: dict[str, ReaderBook], looked_up: list[str]) -> Iterator[str]:
    def load(token: str) -> ReaderBook | None:
        looked_up.append(token)
        return books.get(token)

    app = FastAPI()
    app.include_router(reader_router(load))
    with ServerThread(app) as server:
        yield server.url


@pytest.fixture
def client(reader_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reader_url, timeout=30, follow_redirects=True) as http:
        yield http


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/read/assets/[^"]+)"', html)


def test_reader_page_holds_every_page_in_order_with_timed_sentences(client: httpx.Client) -> None:
    response = client.get(f"/read/{TOKEN}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    positions = [html.index(text) for text in ("Mira found a red kite.", "The wind sang in the grass.", "At sunset they flew home.")]
    assert positions == sorted(positions)
    assert '<span class="sentence" data-begin="1.700" data-end="3.200">It pulled her up the hill.</span>' in html
    assert html.count("<audio ") == 2
    assert re.search(r'<audio [^>]*preload="auto"[^>]*src="/media/1.mp3"', html)
    assert re.search(r'<audio [^>]*preload="none"[^>]*src="/media/2.mp3"', html)
    assert "This page has no narration." in html
    assert '<html lang="en" dir="ltr">' in html
    for landmark in ("<header", "<main", 'aria-live="polite"', 'aria-label="Next page"', 'aria-label="Play"'):
        assert landmark in html


def test_reader_links_each_book_file_only_when_it_exists(client: httpx.Client) -> None:
    full = client.get(f"/read/{TOKEN}").text
    for url in (f"/books/{TOKEN}.pdf", f"/books/{TOKEN}.epub", f"/books/{TOKEN}.m4b"):
        assert f'href="{url}"' in full
    plain = client.get(f"/read/{HOSTILE_TOKEN}").text
    assert 'href="/books/' + HOSTILE_TOKEN + '.pdf"' in plain
    assert ".epub" not in plain and "Audiobook" not in plain


def test_reader_shows_hostile_text_as_text(client: httpx.Client) -> None:
    html = client.get(f"/read/{HOSTILE_TOKEN}").text
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(&quot;title&quot;)&lt;/script&gt;" in html
    assert "She said &quot;hi&quot; &amp; left. &lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;" in html
    # The right-to-left override is dropped (as the PDF and EPUB drop it), so it cannot reorder the name.
    assert "<bdi>&lt;/script&gt;&lt;script&gt;alert(&quot;title&quot;)&lt;/script&gt; gnp.exe</bdi>" in html and "\u202e" not in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == [s for s in scripts if re.fullmatch(r'<script src="/read/assets/reader\.js\?v=[0-9a-f]+" defer>', s)]
    assert len(scripts) == 1


def test_reader_page_sends_a_strict_policy(client: httpx.Client) -> None:
    headers = client.get(f"/read/{HOSTILE_TOKEN}").headers
    policy = headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "img-src 'self' https://pictures.example.org;" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("token", ["Unknown_" * 4 + "0123456789a", EXPIRED_TOKEN])
def test_unknown_or_expired_link_gets_a_plain_html_404(client: httpx.Client, token: str) -> None:
    response = client.get(f"/read/{token}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "There is no book at this link" in response.text
    assert "<script" not in response.text and "/read/assets/reader.css" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("token", ["short", "has.dots.in.it.and.is.long.enough", "a" * 129, "%3Cscript%3E" * 3])
def test_malformed_token_is_refused_before_any_look_up(client: httpx.Client, looked_up: list[str], token: str) -> None:
    looked_up.clear()
    response = client.get(f"/read/{token}")
    assert response.status_code == 404
    assert "There is no book at this link" in response.text
    assert looked_up == []


def test_assets_are_served_with_long_cache_and_revalidation(client: httpx.Client) -> None:
    urls = _asset_urls(client.get(f"/read/{TOKEN}").text)
    kinds = {"reader.js": "text/javascript", "reader.css": "text/css", "icon.svg": "image/svg+xml"}
    assert sorted(url.split("/")[-1].split("?")[0] for url in urls) == sorted(kinds)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kinds[url.split("/")[-1].split("?")[0]])
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    assert "togglePlay" in client.get("/read/assets/reader.js").text
    assert client.get("/read/assets/reader.js").headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["/read/assets/..%2Froutes.py", "/read/assets/..%2F..%2F..%2Fpyproject.toml", "/read/assets/%2e%2e",
     "/read/assets/routes.py", "/read/assets/model.py", "/read/assets/", "/read/assets/READER.JS", "/read/assets/.hidden.js"],
)
def test_asset_paths_outside_the_table_are_refused(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "reader_router" not in response.text and "[project]" not in response.text
    assert "reader.js" not in re.sub(r'(?:href|src)="/read/assets/[^"]+"', "", response.text)


def test_book_refuses_script_and_protocol_relative_links() -> None:
    for bad in ("javascript:alert(1)", "//evil.example/x.pdf", " data:text/html,hi", "/\\evil.example"):
        with pytest.raises(ValidationError, match="reader URL"):
            _book(pdf_url=bad)
    with pytest.raises(ValidationError, match="reader URL"):
        ReaderPage(number=1, text="x", audio_url="javascript:play()")


def test_direction_follows_the_language_unless_given() -> None:
    assert _book(language="ar").direction == "rtl"
    assert _book(language="he-IL").direction == "rtl"
    assert _book(language="fr").direction == "ltr"
    assert _book(language="en", direction="rtl").direction == "rtl"


def test_sentence_runs_wrap_sentences_across_line_breaks_and_keep_the_text() -> None:
    text = "One  day\nthe fox ran. Then it slept!  The end."
    sentences = [SpokenSentence(text="One day the fox ran.", begin=0, end=1),
                 SpokenSentence(text="Missing sentence.", begin=1, end=2),
                 SpokenSentence(text="The end.", begin=2, end=3)]
    runs = sentence_runs(text, sentences)
    assert "".join(run.text for run in runs) == text
    assert [(run.text, run.sentence.begin if run.sentence else None) for run in runs] == [
        ("One  day\nthe fox ran.", 0), (" Then it slept!  ", None), ("The end.", 2),
    ]

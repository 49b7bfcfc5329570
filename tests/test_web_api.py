"""The web app over real HTTP on loopback: the REST API, server-sent progress, book links, auth, limits, and the
studio page's own API through gradio_client. The tiny services run in-process; no mocks."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from shared.server_thread import ServerThread, free_port  # noqa: E402
from shared.settings import Settings  # noqa: E402
from webapp.app import create_web_app  # noqa: E402

PAGES = 2


@pytest.fixture(scope="module")
def web(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The web app with its tiny services; the queue holds one book, so a second one at once is refused."""
    port = free_port()
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("web-data"), "max_queued_jobs": 1, "public_url": None})
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A web app with an API key and a limit of two changes per minute (no services needed for these checks)."""
    settings = tiny_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("guarded-data"), "api_key": SecretStr("s3cret-key"), "rate_limit_per_minute": 2}
    )
    server = ServerThread(create_web_app(settings, start_services=False)).start(timeout=120)
    yield server
    server.stop()


@pytest.fixture
def client(web: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=120) as http:
        yield http


def post_story(client: httpx.Client, photo: bytes, *, logo: bytes | None = None, **fields: object) -> httpx.Response:
    data = {"pages": str(PAGES), "language": "ko", "style": "comic", "character_names": "Mia, Leo", "seed": "7"}
    data.update({key: str(value) for key, value in fields.items()})
    files = {"photo": ("photo.jpg", photo, "image/jpeg")}
    if logo is not None:
        files["logo"] = ("logo.jpg", logo, "image/jpeg")
    return client.post("/api/v1/stories", files=files, data=data)


def read_events(client: httpx.Client, events_url: str) -> list[dict]:
    events = []
    with client.stream("GET", events_url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[len("data:"):]))
    return events


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]
    if error_type:
        assert error["type"] == error_type
    return error


@pytest.fixture(scope="module")
def finished_story(web: ServerThread, tiny_settings: Settings) -> dict:
    """One book made over HTTP: the 202 answer, every progress event, and the final story."""
    photo = (Path(__file__).parent / "assets" / "photo.jpg").read_bytes()
    with httpx.Client(base_url=web.url, timeout=120) as http:
        accepted = post_story(
            http, photo, logo=photo, brand_name="Acme Kites", brand_message="Kites that fly in any weather",
            brand_primary_color="#112233", brand_cta_url="https://example.com/kites", brand_cta_text="Fly one",
        )
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        events = read_events(http, body["links"]["events"])
        story = http.get(body["links"]["self"]).json()
    return {"accepted": body, "events": events, "story": story, "location": accepted.headers["location"]}


def test_story_is_accepted_with_links(finished_story: dict) -> None:
    accepted = finished_story["accepted"]
    assert accepted["status"] == "queued"
    assert accepted["pages_total"] == PAGES
    assert finished_story["location"] == accepted["links"]["self"] == f"/api/v1/stories/{accepted['id']}"
    assert accepted["links"]["events"].endswith("/events")
    assert accepted["links"]["book"].startswith("http://127.0.0.1:") and accepted["links"]["book"].endswith(".pdf")


def test_progress_events_name_stages_count_pages_and_end_done(finished_story: dict) -> None:
    events = finished_story["events"]
    assert events[0]["job_id"] == finished_story["accepted"]["id"]
    assert events[-1]["status"] == "done" and events[-1]["stage"] == "done"
    stages = [event["stage"] for event in events]
    assert "illustrate" in stages and "book" in stages
    painted = [event["page"] for event in events if event["page"] is not None]
    assert sorted(set(painted)) == list(range(0, PAGES + 1))
    counts = [event["pages_done"] for event in events]
    assert counts == sorted(counts) and counts[-1] == PAGES


def test_finished_story_lists_pages_pictures_and_book(finished_story: dict, client: httpx.Client) -> None:
    story = finished_story["story"]
    assert story["status"] == "done" and story["pages_done"] == story["pages_total"] == PAGES
    assert story["language"] == "ko" and story["options"]["character_names"] == ["Mia", "Leo"]
    assert story["options"]["brand"]["name"] == "Acme Kites" and story["options"]["brand"]["primary_color"] == "#112233"
    assert story["title"]
    assert [page["number"] for page in story["pages"]] == list(range(1, PAGES + 1))
    for page in story["pages"]:
        assert page["text"] and page["original_text"]
        picture = client.get(page["image_url"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG")
    assert client.get(story["cover_url"]).content.startswith(b"\x89PNG")
    assert story["book_url"] == finished_story["accepted"]["links"]["book"]


def test_book_link_serves_the_pdf_inline(finished_story: dict, client: httpx.Client) -> None:
    from pypdf import PdfReader

    book = client.get(finished_story["story"]["book_url"])
    assert book.status_code == 200
    assert book.headers["content-type"] == "application/pdf"
    assert book.headers["content-disposition"].startswith("inline;") and ".pdf" in book.headers["content-disposition"]
    assert book.content.startswith(b"%PDF")
    assert len(PdfReader(io.BytesIO(book.content)).pages) == PAGES + 2


def test_expired_book_link_is_404(finished_story: dict, web: ServerThread, client: httpx.Client) -> None:
    store = web.server.config.app.state.web.workshop.store
    story_id = finished_story["accepted"]["id"]
    store.update(story_id, book_expires_at=time.time() - 1)
    try:
        error = assert_error(client.get(finished_story["story"]["book_url"]), 404, "not_found")
        assert "expired" in error["message"]
    finally:
        store.update(story_id, book_expires_at=None)
    assert client.get(finished_story["story"]["book_url"]).status_code == 200


def test_a_finished_story_cannot_be_cancelled_and_an_unknown_one_is_404(finished_story: dict, client: httpx.Client) -> None:
    story_id = finished_story["story"]["id"]
    error = assert_error(client.post(f"/api/v1/stories/{story_id}/cancel"), 409, "conflict")
    assert "nothing to stop" in error["message"]
    assert_error(client.post("/api/v1/stories/0123456789abcdef/cancel"), 404, "not_found")


def test_unknown_story_ids_and_book_tokens_are_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/stories/0123456789abcdef"), 404, "not_found")
    assert_error(client.get("/api/v1/stories/0123456789abcdef/events"), 404, "not_found")
    assert_error(client.delete("/api/v1/stories/0123456789abcdef"), 404, "not_found")
    assert_error(client.post("/api/v1/stories/0123456789abcdef/pages/1/regenerate", json={"what": "image"}), 404, "not_found")
    assert_error(client.get("/books/" + "A" * 43 + ".pdf"), 404, "not_found")
    assert_error(client.get("/books/not-a-token.pdf"), 404, "not_found")


def test_text_file_named_jpg_is_refused_in_plain_words(client: httpx.Client) -> None:
    response = client.post("/api/v1/stories", files={"photo": ("holiday.jpg", b"Dear diary, today we went to the sea.", "image/jpeg")})
    error = assert_error(response, 400, "invalid_image")
    assert error["param"] == "photo"
    assert error["message"] == "The uploaded file `photo` is not an image Fabula can read. Use a JPEG, PNG, WebP or GIF photo."


def test_bad_options_name_the_field_and_the_rule(client: httpx.Client, photo_bytes: bytes) -> None:
    error = assert_error(post_story(client, photo_bytes, pages=40), 400, "invalid_request_error")
    assert error["param"] == "pages" and "24" in error["message"]
    error = assert_error(post_story(client, photo_bytes, language="Klingon"), 400)
    assert error["param"] == "language" and "Klingon" in error["message"]
    error = assert_error(post_story(client, photo_bytes, brand_name="Acme", brand_primary_color="blue"), 400)
    assert error["param"] == "brand_primary_color" and "#RRGGBB" in error["message"]


def test_full_queue_answers_429_with_retry_after(client: httpx.Client, photo_bytes: bytes) -> None:
    first = post_story(client, photo_bytes)
    assert first.status_code == 202, first.text
    try:
        refused = post_story(client, photo_bytes)
        error = assert_error(refused, 429, "rate_limit_exceeded")
        assert int(refused.headers["retry-after"]) > 0
        assert "FABULA_MAX_QUEUED_JOBS" in error["message"]
    finally:
        assert client.delete(first.json()["links"]["self"]).status_code == 204


def test_page_edit_repaints_one_picture_and_rebinds_the_book(finished_story: dict, client: httpx.Client) -> None:
    story = finished_story["story"]
    before = {page["number"]: client.get(page["image_url"]).content for page in story["pages"]}
    edit = client.post(f"{story['links']['self']}/pages/1/regenerate", data={"what": "image"})
    assert edit.status_code == 202, edit.text
    events = read_events(client, story["links"]["events"])
    assert events[-1]["status"] == "done"
    after = client.get(story["links"]["self"]).json()
    assert after["book_version"] == story["book_version"] + 1
    assert after["pages"][0]["image_url"] != story["pages"][0]["image_url"]
    assert client.get(after["pages"][1]["image_url"]).content == before[2]
    assert client.get(after["book_url"]).content.startswith(b"%PDF")


def test_deleted_story_takes_its_book_and_pictures_with_it(finished_story: dict, client: httpx.Client) -> None:
    story = client.get(finished_story["story"]["links"]["self"]).json()
    assert client.get(story["book_url"]).status_code == 200
    assert client.delete(story["links"]["self"]).status_code == 204
    assert_error(client.get(story["book_url"]), 404, "not_found")
    assert_error(client.get(story["links"]["self"]), 404, "not_found")
    assert_error(client.get(story["pages"][0]["image_url"]), 404, "not_found")


def test_options_list_languages_styles_audiences_and_limits(client: httpx.Client) -> None:
    options = client.get("/api/v1/options").json()
    codes = {language["code"]: language for language in options["languages"]}
    assert len(codes) >= 40 and codes["ko"]["native"] == "한국어" and codes["ar"]["rtl"] is True
    assert len(options["styles"]) >= 6
    assert {audience["id"] for audience in options["audiences"]} >= {"children", "adults"}
    assert options["limits"]["max_pages"] == 24 and options["limits"]["max_queued_jobs"] == 1
    assert "/api/v1/stories/{story_id}/events" in client.get("/openapi.json").json()["paths"]


def test_gradio_client_can_call_generate(web: ServerThread, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    info = httpx.get(f"{web.url}/gradio_api/info", timeout=30).json()
    assert "/generate" in info["named_endpoints"]
    workshop = Client(web.url, verbose=False, download_files=str(tmp_path))
    try:
        photo = handle_file(str(Path(__file__).parent / "assets" / "photo.jpg"))
        result = workshop.predict(photo, PAGES, "fr", brand_name="Acme Kites", logo=photo, api_name="/generate")
    finally:
        workshop.close()
    book = next(Path(item) for item in result if isinstance(item, str) and item.endswith(".pdf"))
    assert book.read_bytes().startswith(b"%PDF")


def test_api_needs_the_key_when_one_is_set(guarded: ServerThread) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        error = assert_error(http.get("/api/v1/options"), 401, "authentication_error")
        assert "Authorization: Bearer" in error["message"]
        assert_error(http.get("/api/v1/options", headers={"Authorization": "Bearer wrong"}), 401, "authentication_error")
        assert http.get("/api/v1/options", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert_error(http.get("/books/" + "B" * 43 + ".pdf"), 404, "not_found")


def test_changes_per_client_are_limited_per_minute(guarded: ServerThread) -> None:
    headers = {"Authorization": "Bearer s3cret-key"}
    with httpx.Client(base_url=guarded.url, timeout=30, headers=headers) as http:
        assert_error(http.post("/api/v1/stories/0123456789abcdef/resume"), 404)
        assert_error(http.post("/api/v1/stories/0123456789abcdef/resume"), 404)
        limited = http.post("/api/v1/stories/0123456789abcdef/resume")
        error = assert_error(limited, 429, "rate_limit_exceeded")
        assert int(limited.headers["retry-after"]) >= 1 and "per minute" in error["message"]
        assert http.get("/api/v1/options").status_code == 200

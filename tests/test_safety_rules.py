"""Keeping a book safe to hand a child, over real HTTP on the tiny services: blocked words in anything a reader
writes are refused with a 400 that names the field and the rule; a reader can report a page (it is painted
again and the report kept); reports are listed only for whoever holds the API key."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from shared.blocked_words import DEFAULT_BLOCKED_WORDS, find_blocked, remove_blocked
from shared.server_thread import ServerThread, free_port
from shared.settings import Settings
from tests.conftest import metric_value
from webapp.app import create_web_app

KEY = "report-reader-key"
PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def web(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    port = free_port()
    settings = tiny_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("safety"), "api_key": SecretStr(KEY), "blocked_words": [*DEFAULT_BLOCKED_WORDS, "broccoli"]}
    )
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    yield server
    server.stop()


@pytest.fixture
def client(web: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=120, headers=AUTH) as http:
        yield http


def submit(client: httpx.Client, **fields: str) -> httpx.Response:
    data = {"pages": "1", "seed": "5", "narrate": "false", **fields}
    return client.post("/api/v1/stories", files={"photo": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")}, data=data)


def follow(client: httpx.Client, story_url: str) -> dict:
    with client.stream("GET", f"{story_url}/events") as response:
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1]["status"] == "done", events[-1]
    return client.get(story_url).json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("idea", "a picnic with BROCCOLI and kites"),
        ("tone", "gory"),
        ("character_names", "Mia, Killer"),
        ("brand_name", "Broccoli Co"),
        ("brand_voice", "sexy and bold"),
        ("brand_message", "our kites fly like a bullet"),
        ("brand_cta_text", "buy weed"),
    ],
)
def test_a_blocked_word_in_any_field_is_refused_naming_field_and_rule(client: httpx.Client, field: str, value: str) -> None:
    fields = {field: value}
    if field.startswith("brand_") and field != "brand_name":
        fields["brand_name"] = "Acme"
    response = submit(client, **fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and "blocked-words rule" in error["message"] and "FABULA_BLOCKED_WORDS" in error["message"]


def test_words_match_whole_and_in_any_case() -> None:
    words = ("gun", "crack pipe")
    assert find_blocked("He had begun to sing.", words) is None
    assert find_blocked("A toy GUN!", words) == "gun" and find_blocked("a crack   pipe", words) == "crack pipe"
    assert remove_blocked("The gun was a toy , said Mia.", words) == "The was a toy, said Mia."


def test_reports_are_kept_the_page_repainted_and_listed_only_with_the_key(client: httpx.Client, web: ServerThread) -> None:
    accepted = submit(client)
    assert accepted.status_code == 202, accepted.text
    story = follow(client, accepted.json()["links"]["self"])
    before = client.get(story["pages"][0]["image_url"]).content
    reported = client.post(f"{story['links']['self']}/pages/1/report", json={"what": "picture", "reason": "the picture is scary"})
    assert reported.status_code == 202, reported.text
    assert reported.json()["report"]["action"] == "repainted"
    after = follow(client, story["links"]["self"])
    assert client.get(after["pages"][0]["image_url"]).content != before

    listed = client.get("/api/v1/reports", params={"story_id": story["id"]})
    assert listed.status_code == 200
    [report] = listed.json()["reports"]
    assert report["page"] == 1 and report["reason"] == "the picture is scary" and report["what"] == "picture"
    anonymous = httpx.get(f"{web.url}/api/v1/reports", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    metrics = client.get("/metrics").text
    assert 'fabula_pages_reported_total{action="repainted"} 1.0' in metrics

    refused = client.post(f"{story['links']['self']}/pages/1/regenerate", json={"what": "text", "instruction": "add some broccoli"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "instruction"
    cover_text = client.post(f"{story['links']['self']}/pages/0/report", json={"what": "text", "reason": "odd"})
    assert cover_text.status_code == 409 and cover_text.json()["error"]["param"] == "what"
    empty = client.post(f"{story['links']['self']}/pages/1/report", json={"what": "picture", "reason": ""})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "reason"


def test_a_flagged_picture_is_painted_again_then_replaced_and_the_page_marked(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    from PIL import Image

    from services.illustrate.safety import find_safety_checker
    from services.illustrate.tiny_safety import write_flagging_checker

    # A classifier whose real forward pass flags every picture (its concept threshold is below any similarity).
    flagging = tmp_path_factory.mktemp("checker") / "flag-everything"
    write_flagging_checker(find_safety_checker("tiny", tiny_settings), flagging, [Image.new("RGB", (64, 64), (90, 90, 90))], threshold=-1.0)
    port = free_port()
    settings = tiny_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("flagged"), "safety_model": str(flagging), "max_safety_repaints": 2, "api_key": None}
    )
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            # The counters are the process's: other books made in this test run count too, so compare before and after.
            before = http.get("/metrics").text
            accepted = submit(http)
            assert accepted.status_code == 202, accepted.text
            story = follow(http, accepted.json()["links"]["self"])
            assert story["pages"][0]["replaced"] is True
            steps = server.server.config.app.state.web.workshop.store.steps(story["id"])
            assert steps["image:1"]["flagged"] is True and steps["image:1"]["repaints"] == 2
            assert steps["image:1"]["reference"] is True and steps["image:0"]["reference"] is True  # the photo's own scene and the cover
            metrics = http.get("/metrics").text
            for counter, expected in (("fabula_pictures_replaced_total", 2), ("fabula_pictures_flagged_total", 6)):
                # Replaced: the page and the cover; flagged: each of them painted three times.
                assert metric_value(metrics, counter) - metric_value(before, counter) == expected, counter

            unreferenced = follow(http, submit(http, reference_strength="0").json()["links"]["self"])
            steps = server.server.config.app.state.web.workshop.store.steps(unreferenced["id"])
            assert steps["image:1"]["reference"] is False
    finally:
        server.stop()

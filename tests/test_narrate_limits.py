"""The narrate service on the service kit's terms, with the real espeak-ng over real HTTP: a client that left is
dropped before its turn, a request still queued at its deadline is a 504, both counted; the audio one request
may make is capped (FABULA_MAX_SPEECH_SECONDS); `speed` is a JSON number and nothing else."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from services.narrate.app import create_app, synthesis_slots
from shared.server_thread import ServerThread
from shared.settings import Settings
from tests.conftest import metric_value

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="needs the Debian packages espeak-ng and ffmpeg (scripts/install-system-deps.sh)",
)

# Slow, long speech in mp3 (about 350 s of audio) keeps every synthesis slot busy for a second or two.
LONG_TEXT = ("The little fox ran across the snowy field to find her friends, and the moon watched her go. " * 45)[:4000]
MAX_SECONDS = 500.0


@pytest.fixture(scope="module")
def narrate_url(tiny_settings: Settings) -> Iterator[str]:
    app = create_app(tiny_settings.model_copy(update={"max_speech_seconds": MAX_SECONDS}))
    with ServerThread(app) as server:
        app.state.holder.wait(timeout=30)
        yield server.url


def speak(url: str, timeout: float = 120, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    return httpx.post(url + "/v1/audio/speech", json={"voice": "alloy", **body}, headers=headers, timeout=timeout)


def dropped(url: str, reason: str) -> float:
    return metric_value(httpx.get(url + "/metrics").text, "fabula_requests_dropped_total", service="narrate", reason=reason)


def keep_the_voices_busy(url: str) -> list[threading.Thread]:
    """One long request per synthesis slot (the most one batch holds), so the next request waits its turn."""
    slow = {"input": LONG_TEXT[:3600], "speed": 0.6, "response_format": "mp3"}
    threads = [threading.Thread(target=speak, args=(url,), kwargs=slow, daemon=True) for _ in range(synthesis_slots())]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # past the batch window: the long requests' batch has started
    return threads


def test_a_request_still_queued_at_its_deadline_is_504_and_counted(narrate_url: str) -> None:
    before = dropped(narrate_url, "deadline")
    busy = keep_the_voices_busy(narrate_url)
    started = time.monotonic()
    late = speak(narrate_url, input="Hello there.", headers={"X-Request-Timeout": "0.5"})
    waited = time.monotonic() - started
    for thread in busy:
        thread.join(timeout=120)
    assert late.status_code == 504, late.text
    error = late.json()["error"]
    assert error["type"] == "deadline_exceeded" and "X-Request-Timeout" in error["message"]
    assert waited < 3
    assert dropped(narrate_url, "deadline") == before + 1


def test_a_client_that_left_is_dropped_before_its_turn_and_counted(narrate_url: str) -> None:
    before = dropped(narrate_url, "disconnected")
    busy = keep_the_voices_busy(narrate_url)
    with pytest.raises(httpx.ReadTimeout):
        speak(narrate_url, timeout=0.5, input="Nobody will hear this.")  # the client closes its connection at 0.5 s
    for thread in busy:
        thread.join(timeout=120)
    deadline = time.monotonic() + 10
    while dropped(narrate_url, "disconnected") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dropped(narrate_url, "disconnected") == before + 1
    assert speak(narrate_url, input="Still speaking.").status_code == 200


@pytest.mark.parametrize("speed", [True, False, " 4 ", "4", "fast", None, [1], {"value": 1}])
def test_speed_must_be_a_json_number(narrate_url: str, speed: object) -> None:
    response = speak(narrate_url, input="Hi.", speed=speed)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "speed" and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("speed", [1, 2, 0.5, 4.0])
def test_integer_and_decimal_speeds_are_taken(narrate_url: str, speed: float) -> None:
    assert speak(narrate_url, input="Hi.", speed=speed, response_format="pcm").status_code == 200


def test_speech_longer_than_the_cap_is_refused_before_speaking(narrate_url: str) -> None:
    started = time.monotonic()
    response = speak(narrate_url, input=LONG_TEXT, speed=0.25, response_format="pcm")
    assert response.status_code == 400, response.text[:200]
    error = response.json()["error"]
    assert error["param"] == "input" and "FABULA_MAX_SPEECH_SECONDS" in error["message"] and f"{MAX_SECONDS:,.0f} s" in error["message"]
    assert time.monotonic() - started < 1  # refused from the estimate, nothing was spoken


def test_speech_the_estimate_missed_is_refused_once_measured(tiny_settings: Settings) -> None:
    # Numbers read far longer than their digits: "987654321" is nine words and more.
    app = create_app(tiny_settings.model_copy(update={"max_speech_seconds": 5.0}))
    with ServerThread(app) as server:
        app.state.holder.wait(timeout=30)
        response = speak(server.url, input="987654321 " * 8, response_format="pcm")
        assert response.status_code == 400, response.text[:200]
        error = response.json()["error"]
        assert error["param"] == "input" and "made" in error["message"] and "FABULA_MAX_SPEECH_SECONDS" in error["message"]
        assert speak(server.url, input="Hi.", response_format="pcm").status_code == 200

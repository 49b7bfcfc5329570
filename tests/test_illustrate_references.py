"""Likeness and picture safety over real HTTP on the tiny SDXL: a reference photo travels as base64 in
`reference_image` (IP-Adapter through diffusers' own loader, on the tiny stand-in), and every picture passes the
image safety classifier; a flagged picture never leaves the service (a calm placeholder does, marked `flagged`)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from services.illustrate.app import create_app
from shared.server_thread import ServerThread
from shared.settings import Settings
from tests.conftest import metric_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENDPOINT = "/v1/images/generations"
PHOTO = Path(__file__).parent / "assets" / "photo.jpg"


def start(settings: Settings) -> ServerThread:
    app = create_app(settings, device="cpu")
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=300), app.state.holder.error
    return server


@pytest.fixture(scope="module")
def service(tiny_settings: Settings) -> Iterator[ServerThread]:
    server = start(tiny_settings.model_copy(update={"default_inference_steps": 2, "max_upload_bytes": 2_000_000}))
    yield server
    server.stop()


def b64(image: Image.Image | bytes, fmt: str = "PNG") -> str:
    if isinstance(image, bytes):
        return base64.b64encode(image).decode()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def paint(service: ServerThread, **extra: object) -> httpx.Response:
    body = {"prompt": "a girl flying a kite", "size": "64x64", "seed": 11, **extra}
    return httpx.post(service.url + ENDPOINT, json=body, timeout=300)


def pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"]))).convert("RGB")).astype(np.int16)


def test_a_reference_changes_the_picture_and_the_same_one_repeats_it(service: ServerThread) -> None:
    photo = b64(PHOTO.read_bytes())
    other = b64(Image.new("RGB", (96, 96), (20, 160, 220)), "WEBP")
    plain = pixels(paint(service))
    with_photo = pixels(paint(service, reference_image=photo, reference_strength=0.9))
    again = pixels(paint(service, reference_image=f"data:image/jpeg;base64,{photo}", reference_strength=0.9))
    with_other = pixels(paint(service, reference_image=other, reference_strength=0.9))
    assert np.abs(plain - with_photo).max() > 10
    assert np.abs(with_photo - with_other).max() > 10
    assert np.abs(with_photo - again).max() <= 2
    assert np.abs(pixels(paint(service, reference_image=photo, reference_strength=0.0)) - plain).max() <= 2


@pytest.mark.parametrize(
    "reference",
    [
        "not base64 at all!",
        base64.b64encode(b"Dear diary, a text file.").decode(),
        base64.b64encode(PHOTO.read_bytes()[:300]).decode(),
        "data:image/png,rawbytes",
    ],
)
def test_a_bad_reference_is_a_400_naming_reference_image(service: ServerThread, reference: str) -> None:
    response = paint(service, reference_image=reference)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "reference_image" and error["message"]


def test_a_reference_over_the_upload_limit_is_refused(service: ServerThread) -> None:
    response = paint(service, reference_image="A" * 3_000_000)
    assert response.status_code in (400, 413) and response.json()["error"]["param"] in ("reference_image", "body")


def test_a_flagged_picture_never_leaves_the_service(tiny_settings: Settings, tmp_path: Path) -> None:
    from services.illustrate.safety import find_safety_checker
    from services.illustrate.tiny_safety import write_flagging_checker

    # A classifier whose concept is "any picture at all" (threshold below every similarity): its real forward
    # pass flags whatever the tiny model paints.
    flagging = tmp_path / "flag-everything"
    write_flagging_checker(find_safety_checker("tiny", tiny_settings), flagging, [Image.new("RGB", (64, 64), (128, 128, 128))], threshold=-1.0)
    server = start(tiny_settings.model_copy(update={"default_inference_steps": 2, "safety_model": str(flagging)}))
    try:
        response = paint(server)
        assert response.status_code == 200, response.text
        [image] = response.json()["data"]
        assert image["flagged"] is True
        placeholder = Image.open(io.BytesIO(base64.b64decode(image["b64_json"])))
        assert placeholder.size == (64, 64)
        assert metric_value(httpx.get(server.url + "/metrics").text, "fabula_pictures_flagged_total") >= 1
    finally:
        server.stop()
    assert paint_passes(tiny_settings)


def paint_passes(settings: Settings) -> bool:
    """With the ordinary tiny classifier the same request is not flagged."""
    server = start(settings.model_copy(update={"default_inference_steps": 2}))
    try:
        return paint(server).json()["data"][0]["flagged"] is False
    finally:
        server.stop()

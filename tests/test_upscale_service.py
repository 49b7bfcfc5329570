"""`POST /v1/images/upscale` over real HTTP on loopback: the tiny Real-ESRGAN-class stand-in (through spandrel) and
the classical filter of the offline profile."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from services.illustrate.app import create_app
from services.illustrate.tiny_upscaler import build_tiny_upscaler
from services.illustrate.upscale_models import LANCZOS
from services.illustrate.upscale_requests import plan_upscale
from services.illustrate.upscaler import CLASSICAL_FILTER_NOTE, Upscaler
from shared.profiles import TINY
from shared.server_thread import ServerThread
from shared.settings import Settings
from tests.conftest import metric_value
from tests.test_gpu_setup import FAKE_REPOSITORIES, fake_hub, local_adapter, run_pull

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENDPOINT = "/v1/images/upscale"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((width, height)).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _served(settings: Settings) -> ServerThread:
    app = create_app(settings, device="cpu")
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=300), app.state.holder.error
    return server


@pytest.fixture(scope="module")
def service_settings(tiny_settings: Settings) -> Settings:
    # No painting happens in this module: the safety classifier is off to keep start-up short.
    return tiny_settings.model_copy(update={"batch_window_ms": 50, "max_upscale_pixels": 1024 * 1024, "safety_checker": False})


@pytest.fixture(scope="module")
def service(service_settings: Settings) -> Iterator[ServerThread]:
    server = _served(service_settings)
    yield server
    server.stop()


def _picture(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    data = base64.b64decode(response.json()["data"][0]["b64_json"])
    assert data.startswith(PNG_SIGNATURE)
    return Image.open(io.BytesIO(data))


def test_scale_and_size_give_the_asked_sizes_through_the_tiny_model(service: ServerThread) -> None:
    with httpx.Client(base_url=service.url, timeout=120) as client:
        by_scale = client.post(ENDPOINT, files={"image": ("page.png", _png(48, 32))}, data={"scale": "2"})
        by_size = client.post(ENDPOINT, files={"image": ("page.png", _png(64, 64))}, data={"size": "700x700"})
        ready = client.get("/readyz").json()
    assert _picture(by_scale).size == (96, 64)
    assert _picture(by_size).size == (700, 700)
    assert by_size.json()["model"] == TINY and by_size.json()["warnings"] == []
    assert ready["extra"]["upscale_model"] == TINY
    assert ready["extra"]["upscale_architecture"] == "RealESRGAN Compact"


def test_the_tiny_model_enlarges_the_picture_it_is_given(service: ServerThread) -> None:
    """The stand-in adds a small random residual to a nearest-neighbour copy: the picture stays recognisable."""
    source = Image.open(io.BytesIO(_png(32, 32)))
    response = httpx.post(service.url + ENDPOINT, files={"image": ("page.png", _png(32, 32))}, data={"scale": "4"}, timeout=120)
    enlarged = np.asarray(_picture(response).convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(enlarged - np.asarray(source.convert("L"), dtype=np.float32)).mean() < 24


def test_a_factor_past_the_cost_limit_is_refused_naming_it(service: ServerThread) -> None:
    response = httpx.post(service.url + ENDPOINT, files={"image": ("page.png", _png(512, 512))}, data={"scale": "4"}, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "scale"
    assert "FABULA_MAX_UPSCALE_PIXELS" in error["message"] and "1,048,576" in error["message"]


@pytest.mark.parametrize(
    ("form", "param"),
    [({"scale": "5"}, "scale"), ({"scale": "1.5"}, "scale"), ({"size": "32x32"}, "size"), ({"size": "big"}, "size"),
     ({"scale": "2", "size": "128x128"}, "size")],
)
def test_out_of_range_factors_and_sizes_are_refused(service: ServerThread, form: dict[str, str], param: str) -> None:
    response = httpx.post(service.url + ENDPOINT, files={"image": ("page.png", _png(64, 64))}, data=form, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_a_file_that_is_not_a_picture_is_refused(service: ServerThread) -> None:
    response = httpx.post(service.url + ENDPOINT, files={"image": ("page.png", b"\x89PNG\r\n\x1a\nnot really")}, data={"scale": "2"}, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"


def test_the_plan_leaves_a_small_last_step_to_the_filter() -> None:
    assert plan_upscale((512, 512), (2100, 2100), 4).passes == 1  # 2048 px, then 1.03× by Lanczos
    assert plan_upscale((64, 64), (2100, 2100), 4).passes == 3
    assert plan_upscale((64, 64), (2100, 2100), 1).model_pixels == 2100 * 2100


async def test_a_client_that_leaves_before_its_turn_is_never_upscaled(service_settings: Settings) -> None:
    app = create_app(service_settings.model_copy(update={"batch_window_ms": 600_000, "max_batch_size": 2}), device="cpu")
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=300), app.state.holder.error
        batcher = app.state.batcher
        files = {"image": ("page.png", _png(32, 32))}
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            leaving = asyncio.create_task(client.post(ENDPOINT, files=files, data={"scale": "2"}))
            while batcher.queued < 1:
                await asyncio.sleep(0.01)
            leaving.cancel()
            await asyncio.gather(leaving, return_exceptions=True)
            while batcher.queued > 0:
                await asyncio.sleep(0.01)
            # Two requests of one size fill a call of two at once, so they run without waiting for the window.
            staying = await asyncio.gather(*(client.post(ENDPOINT, files=files, data={"scale": "2"}) for _ in range(2)))
            metrics = (await client.get("/metrics")).text
    assert [response.status_code for response in staying] == [200, 200]
    assert metric_value(metrics, "fabula_requests_dropped_total", reason="disconnected") == 1
    assert metric_value(metrics, "fabula_batch_size_sum") == 2


def test_the_offline_profile_upscales_by_the_classical_filter_and_says_so(service_settings: Settings) -> None:
    server = _served(service_settings.model_copy(update={"upscale_model": LANCZOS}))
    try:
        response = httpx.post(server.url + ENDPOINT, files={"image": ("page.png", _png(40, 40))}, data={"scale": "3"}, timeout=60)
        ready = httpx.get(server.url + "/readyz").json()
    finally:
        server.stop()
    assert _picture(response).size == (120, 120)
    assert response.json()["model"] == LANCZOS
    assert response.json()["warnings"] == [CLASSICAL_FILTER_NOTE]
    assert ready["extra"]["upscale_architecture"] == "Lanczos filter"


def test_models_pull_fetches_the_upscaler_file_and_spandrel_loads_it_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = build_tiny_upscaler(tmp_path / "built").read_bytes()
    monkeypatch.setitem(FAKE_REPOSITORIES, "fabula-test/real-esrgan", {"tiny-x4.safetensors": weights, "README.md": b"readme"})
    here = str(tmp_path)  # every other model is "a local folder": this test is about the upscaler
    models = {
        "FABULA_PROFILE": "cpu", "FABULA_CAPTION_MODEL": here, "FABULA_ILLUSTRATE_MODEL": here, "FABULA_REFINER_MODEL": "none",
        "FABULA_LLM_MODEL": here, "FABULA_LIKENESS_MODEL": str(local_adapter(tmp_path)), "FABULA_SAFETY_CHECKER": "false",
        "FABULA_UPSCALE_MODEL": "fabula-test/real-esrgan/tiny-x4.safetensors",
    }
    app = fake_hub()
    with ServerThread(app) as hub:
        answer = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **models)
    assert "error" not in answer, answer
    assert answer["pulled"][-1]["role"] == "upscale" and answer["pulled"][-1]["action"] == "downloaded"
    assert app.state.served == ["fabula-test/real-esrgan/tiny-x4.safetensors"]

    offline = run_pull("status", tmp_path, HF_HUB_OFFLINE="1", **models)
    status = offline["status"][-1]
    assert (status["role"], status["state"]) == ("upscale", "present")
    loaded = Upscaler.load("pulled", Path(status["path"]) / "tiny-x4.safetensors", device="cpu", settings=Settings())
    assert (loaded.architecture, loaded.model_scale) == ("RealESRGAN Compact", 4)


def test_a_size_is_ascii_digits_of_sensible_length() -> None:
    from shared.schemas import parse_size

    assert parse_size(" 768 × 512 ") == (768, 512)
    for bad in ("²x²", "1" + "0" * 400 + "x1", "9" * 5000 + "x1", "12x", "x12", "1.5x2"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)

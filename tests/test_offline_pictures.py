"""The offline profile's pictures over real HTTP: each page is the reader's photo restyled with OpenCV (no weights)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from services.illustrate.app import create_app, resolve_illustrate_models
from services.illustrate.engine import GenerationJob, IllustrateEngine
from services.illustrate.restyle_scene import scene_mood
from services.illustrate.restyle_styles import DEFAULT_STYLE, preset_for, preset_named
from services.illustrate.tiny import BASE_FOLDER, REFINER_FOLDER
from shared.errors import ModelUnavailable
from shared.profiles import RESTYLE
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings
from tests.conftest import ASSETS
from webapp.story.styles import STYLES

ENDPOINT = "/v1/images/generations"
SAMPLES = Path(__file__).parent.parent / "webapp" / "samples"
SIDE = 128
PAGE = "Mia and her cat play in the garden"
# Share of a picture's grey variance left after a 1.5-pixel blur: a drawn or photographed picture keeps most of it
# (restyled pages: 0.39 or more at 128²), noise keeps almost none (white noise 0.04, the tiny SDXL's picture 0.10).
SMOOTH_SHARE_FLOOR = 0.25
# How much better a picture matches its own photo than another photo (normalised cross-correlation, 0 to 1).
LIKENESS_MARGIN = 0.15
# Mean difference (out of 255) between two pages' pictures of one photo; one seed, prompt and photo give 0.
PAGE_DIFFERENCE_FLOOR = 10.0


@pytest.fixture(scope="module")
def offline_settings(tiny_settings: Settings) -> Settings:
    return tiny_settings.model_copy(update={"profile": Profile.offline, "safety_checker": False, "max_images_per_request": 4})


@pytest.fixture(scope="module")
def service(offline_settings: Settings) -> Iterator[ServerThread]:
    app = create_app(offline_settings, device="cpu")
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=120), app.state.holder.error
    yield server
    server.stop()


def _photo(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


CAT = ASSETS / "photo.jpg"
ASTRONAUT = SAMPLES / "astronaut.jpg"


def _pictures(
    service: ServerThread, *, photo: Path | None = CAT, prompt: str = PAGE, size: tuple[int, int] = (SIDE, SIDE), **extra: object
) -> list[Image.Image]:
    body: dict[str, object] = {"prompt": prompt, "size": f"{size[0]}x{size[1]}", "seed": 7, **extra}
    if photo is not None:
        body["reference_image"] = _b64(photo)
    response = httpx.post(service.url + ENDPOINT, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB") for item in response.json()["data"]]


def _grey(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("L"), dtype=np.float32)


def _smooth_share(picture: Image.Image) -> float:
    grey = _grey(picture)
    grey -= grey.mean()
    return float(cv2.GaussianBlur(grey, (0, 0), 1.5).var() / grey.var())


def _likeness(picture: Image.Image, photo: Image.Image) -> float:
    """How well the picture matches some view of the photo: the best normalised cross-correlation of its blurred
    grey pixels over the photo and its mirror image, at every size a page's framing can give it."""
    grey = _grey(photo)
    scale = 96 / max(grey.shape)
    view = cv2.GaussianBlur(cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), (0, 0), 1)
    picture_grey = cv2.GaussianBlur(_grey(picture), (0, 0), 2)
    best = -1.0
    for side in range(int(min(view.shape) * 0.6), min(view.shape) + 1, 2):
        template = cv2.resize(picture_grey, (side, side), interpolation=cv2.INTER_AREA)
        for seen in (view, np.ascontiguousarray(view[:, ::-1])):
            best = max(best, float(cv2.matchTemplate(seen, template, cv2.TM_CCOEFF_NORMED).max()))
    return best


def _difference(first: Image.Image, second: Image.Image) -> float:
    return float(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).mean())


def test_readyz_and_models_say_the_pictures_are_the_photo_restyled(service: ServerThread) -> None:
    ready = httpx.get(service.url + "/readyz").json()
    assert ready["model"] == RESTYLE
    assert "restyled" in ready["extra"]["pictures"]
    assert {style.id for style in STYLES} <= set(ready["extra"]["styles"].split(", "))


def test_a_page_picture_is_the_readers_photo_restyled(service: ServerThread) -> None:
    cat, astronaut = _photo(CAT), _photo(ASTRONAUT)
    cat_pictures = _pictures(service, photo=CAT, n=3)
    astronaut_pictures = _pictures(service, photo=ASTRONAUT, n=3)
    for cat_picture, astronaut_picture in zip(cat_pictures, astronaut_pictures, strict=True):
        own = _likeness(cat_picture, cat)
        assert own > _likeness(cat_picture, astronaut) + LIKENESS_MARGIN
        assert own > _likeness(astronaut_picture, cat) + LIKENESS_MARGIN


def test_a_restyled_picture_is_smooth_where_the_tiny_sdxl_paints_noise(
    service: ServerThread, tiny_sdxl: Path, tiny_settings: Settings, one_torch_thread: None
) -> None:
    tiny = IllustrateEngine.load(tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=tiny_settings)
    job = GenerationJob(prompt=PAGE, negative_prompt=None, count=1, width=64, height=64, steps=3, guidance_scale=5.0, refiner_start=0.8, seed=7)
    [[painted_noise]] = tiny.generate([job])
    white_noise = Image.fromarray(np.random.default_rng(7).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
    [restyled] = _pictures(service)
    assert _smooth_share(restyled) > SMOOTH_SHARE_FLOOR
    assert _smooth_share(painted_noise) < SMOOTH_SHARE_FLOOR
    assert _smooth_share(white_noise) < SMOOTH_SHARE_FLOOR


def test_pages_with_other_seeds_or_scenes_get_other_pictures(service: ServerThread) -> None:
    first, next_seed = _pictures(service, n=2)
    other_scene = _pictures(service, prompt="Mia and her cat watch the boats by the sea")[0]
    assert _difference(first, next_seed) > PAGE_DIFFERENCE_FLOOR
    assert _difference(first, other_scene) > PAGE_DIFFERENCE_FLOOR


def test_the_same_seed_prompt_and_photo_give_the_same_picture(service: ServerThread) -> None:
    again = _pictures(service)[0]
    assert _difference(_pictures(service)[0], again) == 0
    second_of_two = _pictures(service, n=2)[1]
    assert _difference(second_of_two, _pictures(service, seed=8)[0]) == 0  # picture i of seed s is seed s + i's


def test_a_request_without_a_photo_is_refused_naming_reference_image(service: ServerThread) -> None:
    response = httpx.post(service.url + ENDPOINT, json={"prompt": PAGE, "size": "64x64", "reference_strength": 0.6}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "reference_image"
    assert "restyling a photo" in error["message"] and "`reference_image`" in error["message"]


def test_every_book_style_has_a_preset_and_its_own_look_at_the_size_asked_for(service: ServerThread) -> None:
    pictures = {}
    for style in STYLES:
        assert preset_named(style.id) is not None, f"no restyle preset for the book style {style.id!r}"
        [pictures[style.id]] = _pictures(service, size=(96, 64), style=style.id)
        assert pictures[style.id].size == (96, 64)
        assert _smooth_share(pictures[style.id]) > SMOOTH_SHARE_FLOOR, style.id
    looks = list(pictures.values())
    assert all(_difference(one, other) > 0 for index, one in enumerate(looks) for other in looks[index + 1 :])
    line_art = np.asarray(pictures["line-art"])
    assert (line_art.max(axis=2) - line_art.min(axis=2)).max() <= 2  # a colouring-book page has no colour


def test_the_openai_client_gets_a_restyled_picture_with_the_style_in_extra_body(service: ServerThread) -> None:
    client = openai.OpenAI(base_url=service.url + "/v1", api_key="x")
    result = client.images.generate(
        prompt=PAGE, size="64x64", response_format="b64_json", extra_body={"reference_image": _b64(CAT), "style": "comic", "seed": 3},
    )
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or ""))).size == (64, 64)
    assert result.data[0].model_extra is not None and result.data[0].model_extra["seed"] == 3


def test_scene_words_set_the_colour_mood(service: ServerThread) -> None:
    night = np.asarray(_pictures(service, prompt="Mia and her cat count the stars at night", style="photographic")[0], dtype=np.float32)
    sunset = np.asarray(_pictures(service, prompt="Mia and her cat wave at the sunset", style="photographic")[0], dtype=np.float32)
    assert night.mean() < sunset.mean()
    red, blue = 0, 2
    assert night[..., blue].mean() - night[..., red].mean() > sunset[..., blue].mean() - sunset[..., red].mean()
    assert scene_mood("a fox in the forest at night").name == "forest"  # the first mood word wins
    assert scene_mood("a quiet kitchen").name == "neutral"


def test_the_style_is_read_from_the_prompt_when_the_field_is_not_sent() -> None:
    assert preset_for("a fox, soft watercolor children's book illustration, gentle washes").id == "watercolor"
    assert preset_for("a fox, black and white colouring book page, clean thick outlines").id == "line-art"
    assert preset_for("a comic about a fox, pixel-art").id == "pixel-art"  # the `style` field ends the prompt
    assert preset_for("a fox in a den").id == DEFAULT_STYLE


def test_the_offline_profile_needs_no_weights_and_no_refiner(offline_settings: Settings) -> None:
    assert tuple(resolve_illustrate_models(offline_settings)) == (RESTYLE, None, None)
    with pytest.raises(ModelUnavailable) as raised:
        resolve_illustrate_models(offline_settings.model_copy(update={"refiner_model": "some/refiner"}))
    assert raised.value.param == "FABULA_REFINER_MODEL"

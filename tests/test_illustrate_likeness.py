"""Likeness on the tiny models: the tiny IP-Adapter loads through diffusers' `load_ip_adapter`, a reference photo
changes the picture, each picture of a batch follows its own photo, and strength 0 is the same as no photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from services.illustrate.engine import GenerationJob, IllustrateEngine
from services.illustrate.likeness import LikenessWeights, find_likeness_weights
from services.illustrate.likeness_files import ADAPTER_FILES
from services.illustrate.tiny import BASE_FOLDER, LIKENESS_FOLDER, REFINER_FOLDER
from shared.errors import ModelUnavailable
from shared.settings import Settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_PIXEL_DIFFERENCE = 2  # out of 255: batched and single calls differ by rounding only
ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def engine(tiny_sdxl: Path, tiny_settings: Settings) -> IllustrateEngine:
    return IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=tiny_settings,
        likeness=find_likeness_weights("tiny", tiny_settings),
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(ASSETS / "photo.jpg").convert("RGB")


@pytest.fixture(scope="module")
def red_square() -> Image.Image:
    return Image.new("RGB", (96, 96), (200, 40, 40))


def _job(seed: int = 5, count: int = 1, **changes: object) -> GenerationJob:
    values: dict = {
        "prompt": "a happy cat", "negative_prompt": None, "count": count, "width": 64, "height": 64,
        "steps": 3, "guidance_scale": 5.0, "refiner_start": 0.8, "seed": seed,
    }
    values.update(changes)
    return GenerationJob(**values)


def _difference(first: Image.Image, second: Image.Image) -> int:
    return int(np.abs(np.asarray(first).astype(np.int16) - np.asarray(second).astype(np.int16)).max())


def test_tiny_adapter_is_saved_as_published_and_loaded_through_load_ip_adapter(engine: IllustrateEngine, tiny_sdxl: Path) -> None:
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from transformers import CLIPVisionModelWithProjection

    adapter = tiny_sdxl / LIKENESS_FOLDER
    with safe_open(adapter / ADAPTER_FILES.subfolder / ADAPTER_FILES.weight_name, framework="pt") as weights:
        prefixes = {key.split(".")[0] for key in weights.keys()}  # noqa: SIM118 - safe_open has keys() but is not iterable
    assert prefixes == {"image_proj", "ip_adapter"}
    assert (adapter / ADAPTER_FILES.image_encoder_folder / "preprocessor_config.json").is_file()
    assert isinstance(engine.base.image_encoder, CLIPVisionModelWithProjection)
    assert engine.base.unet.config.encoder_hid_dim_type == "ip_image_proj"
    cross_attention = [name for name in engine.base.unet.attn_processors if name.endswith("attn2.processor")]
    assert cross_attention and all(
        isinstance(engine.base.unet.attn_processors[name], IPAdapterAttnProcessor2_0) for name in cross_attention
    )
    assert engine.refiner.unet.config.encoder_hid_dim_type is None  # the refiner has no adapter
    assert engine.info().extra["likeness"] is True


def test_a_reference_changes_the_picture(engine: IllustrateEngine, photo: Image.Image) -> None:
    without = engine.generate([_job()])[0][0]
    with_photo = engine.generate([_job(reference=photo)])[0][0]
    assert _difference(without, with_photo) > MAX_PIXEL_DIFFERENCE


def test_two_references_give_two_pictures(engine: IllustrateEngine, photo: Image.Image, red_square: Image.Image) -> None:
    first = engine.generate([_job(reference=photo, reference_strength=1.0)])[0][0]
    second = engine.generate([_job(reference=red_square, reference_strength=1.0)])[0][0]
    assert _difference(first, second) > MAX_PIXEL_DIFFERENCE


def test_the_same_reference_and_seed_give_the_same_picture_alone_and_in_a_batch(
    engine: IllustrateEngine, photo: Image.Image, red_square: Image.Image
) -> None:
    alone = engine.generate([_job(reference=photo)])[0][0]
    again = engine.generate([_job(reference=photo.copy())])[0][0]
    assert _difference(alone, again) == 0
    batch = [_job(seed=9, reference=red_square), _job(reference=photo), _job(seed=3, count=2, reference=red_square)]
    assert len({job.batch_key for job in batch}) == 1  # different photos at one strength share a call
    results = engine.generate(batch)
    assert [len(images) for images in results] == [1, 1, 2]
    assert _difference(results[1][0], alone) <= MAX_PIXEL_DIFFERENCE
    red_alone = engine.generate([_job(seed=9, reference=red_square)])[0][0]
    assert _difference(results[0][0], red_alone) <= MAX_PIXEL_DIFFERENCE


def test_strength_zero_paints_as_without_a_reference(
    engine: IllustrateEngine, tiny_sdxl: Path, tiny_settings: Settings, photo: Image.Image
) -> None:
    silent = _job(reference=photo, reference_strength=0.0)
    assert silent.batch_key == _job().batch_key
    without = engine.generate([_job()])[0][0]
    assert _difference(engine.generate([silent])[0][0], without) == 0
    plain = IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=tiny_settings
    )
    assert _difference(plain.generate([_job()])[0][0], without) <= MAX_PIXEL_DIFFERENCE


def test_requests_with_and_without_a_reference_or_at_other_strengths_never_share_a_call(
    engine: IllustrateEngine, photo: Image.Image
) -> None:
    with_photo, without = _job(reference=photo), _job()
    assert with_photo.batch_key != without.batch_key
    assert _job(reference=photo, reference_strength=0.3).batch_key != _job(reference=photo, reference_strength=0.9).batch_key
    with pytest.raises(ValueError, match="reference strength"):
        engine.generate([with_photo, without])


def test_jobs_compare_by_the_photos_pixels(photo: Image.Image) -> None:
    assert _job(reference=photo) == _job(reference=photo.copy())
    assert _job(reference=photo) != _job(reference=photo.rotate(90))
    with pytest.raises(ValueError, match="between 0 and 1"):
        _job(reference=photo, reference_strength=1.5)


def test_missing_adapter_weights_leave_the_engine_painting_and_refuse_a_reference(
    tiny_sdxl: Path, tiny_settings: Settings, photo: Image.Image
) -> None:
    with pytest.raises(ModelUnavailable, match="fabula models pull gpu") as missing:
        find_likeness_weights("stabilityai/stable-diffusion-xl-base-1.0", tiny_settings, adapter_id="fabula-tests/absent-adapter")
    assert missing.value.param == "reference_image"
    engine = IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, None, model_id="tiny", device="cpu", settings=tiny_settings, likeness=missing.value
    )
    assert engine.generate([_job(refiner_start=1.0)])[0][0].size == (64, 64)
    assert engine.generate([_job(refiner_start=1.0, reference=photo, reference_strength=0.0)])[0][0].size == (64, 64)
    with pytest.raises(ModelUnavailable, match="fabula models pull gpu"):
        engine.require_likeness()
    with pytest.raises(ModelUnavailable):
        engine.generate([_job(refiner_start=1.0, reference=photo)])


def test_likeness_weights_in_a_local_folder_are_found(tiny_sdxl: Path, tiny_settings: Settings) -> None:
    folder = tiny_sdxl / LIKENESS_FOLDER
    assert find_likeness_weights("any-real-model", tiny_settings, adapter_id=str(folder)) == LikenessWeights(folder)

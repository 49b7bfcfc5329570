"""The SDXL engine on the tiny base + refiner: shared components, the hand-off, and the speed switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.illustrate.engine import GenerationJob, IllustrateEngine, PaintedImage, default_sampling
from services.illustrate.tiny import BASE_FOLDER, LIKENESS_FOLDER, REFINER_FOLDER, SAFETY_FOLDER, build_tiny_sdxl
from shared.settings import Settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_PIXEL_DIFFERENCE = 2  # out of 255


@pytest.fixture(scope="module")
def engine(tiny_sdxl: Path, tiny_settings: Settings) -> IllustrateEngine:
    return IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=tiny_settings
    )


def _job(seed: int = 5, count: int = 1, **changes: object) -> GenerationJob:
    values: dict = {
        "prompt": "a happy cat", "negative_prompt": None, "count": count, "width": 64, "height": 64,
        "steps": 3, "guidance_scale": 5.0, "refiner_start": 0.8, "seed": seed,
    }
    values.update(changes)
    return GenerationJob(**values)


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_tiny_build_is_idempotent(tiny_sdxl: Path) -> None:
    unet_weights = tiny_sdxl / BASE_FOLDER / "unet" / "diffusion_pytorch_model.safetensors"
    written = unet_weights.stat().st_mtime_ns
    assert build_tiny_sdxl(tiny_sdxl) == tiny_sdxl
    assert unet_weights.stat().st_mtime_ns == written
    assert not (tiny_sdxl / REFINER_FOLDER / "text_encoder").exists()
    assert (tiny_sdxl / LIKENESS_FOLDER / "sdxl_models").is_dir() and (tiny_sdxl / SAFETY_FOLDER / "config.json").is_file()


def test_refiner_shares_text_encoder_2_and_vae_with_the_base(engine: IllustrateEngine) -> None:
    assert engine.refiner.text_encoder_2 is engine.base.text_encoder_2
    assert engine.refiner.vae is engine.base.vae
    assert engine.refiner.unet is not engine.base.unet
    assert engine.refiner.text_encoder is None


def test_handoff_splits_the_schedule_between_base_and_refiner(engine: IllustrateEngine) -> None:
    assert engine.handoff_steps(4, 0.8) == (3, 1)
    assert sum(engine.handoff_steps(30, 0.8)) == 30
    assert engine.handoff_steps(4, 1.0)[1] == 0


def test_generate_returns_each_jobs_images_in_order(engine: IllustrateEngine) -> None:
    results = engine.generate([_job(seed=1, count=2), _job(seed=9)])
    assert [len(images) for images in results] == [2, 1]
    assert all(image.size == (64, 64) for images in results for image in images)
    alone = engine.generate([_job(seed=2)])[0][0]
    assert np.abs(_pixels(alone) - _pixels(results[0][1])).max() <= MAX_PIXEL_DIFFERENCE


def test_paint_returns_unflagged_pictures_when_no_checker_is_loaded(engine: IllustrateEngine) -> None:
    assert engine.safety is None and engine.likeness is None
    painted = engine.paint([_job(seed=4, count=2)])
    assert [type(picture) for picture in painted[0]] == [PaintedImage, PaintedImage]
    assert not any(picture.flagged for picture in painted[0])
    assert np.array_equal(_pixels(painted[0][1].image), _pixels(engine.generate([_job(seed=4, count=2)])[0][1]))


def test_an_engine_without_likeness_weights_refuses_a_reference_in_plain_words(engine: IllustrateEngine) -> None:
    from PIL import Image

    from shared.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="without likeness"):
        engine.generate([_job(reference=Image.new("RGB", (32, 32), (90, 90, 90)))])


def test_generate_refuses_a_batch_of_mixed_sizes(engine: IllustrateEngine) -> None:
    with pytest.raises(ValueError, match="one size"):
        engine.generate([_job(), _job(width=72)])


def test_defaults_follow_the_model() -> None:
    settings = Settings()
    assert default_sampling("stabilityai/sdxl-turbo", False, settings) == (4, 0.0)
    assert default_sampling("stabilityai/stable-diffusion-xl-base-1.0", True, settings) == (30, 5.0)
    tuned = Settings(default_inference_steps=12, default_guidance_scale=3.5)
    assert default_sampling("stabilityai/sdxl-turbo", False, tuned) == (12, 3.5)


def test_channels_last_and_fused_qkv_match_the_plain_engine(engine: IllustrateEngine, tiny_sdxl: Path, tiny_settings: Settings) -> None:
    assert {"fuse_qkv", "channels_last", "attention:sdpa"} <= set(engine.optimisations)
    plain_settings = tiny_settings.model_copy(update={"channels_last": False, "fuse_qkv": False, "attention": "eager"})
    plain = IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=plain_settings
    )
    assert plain.optimisations == ["attention:eager"]
    job = _job(seed=21)
    optimised_image = engine.generate([job])[0][0]
    plain_image = plain.generate([job])[0][0]
    assert np.abs(_pixels(optimised_image) - _pixels(plain_image)).max() <= MAX_PIXEL_DIFFERENCE


@pytest.mark.slow
def test_compiled_engine_matches_the_eager_engine(engine: IllustrateEngine, tiny_sdxl: Path, tiny_settings: Settings) -> None:
    # aot_eager with static shapes traces the UNet through TorchDynamo and AOTAutograd (~10 s on two CPU cores)
    # without inductor's code generation (~100 s there); base only, so one UNet is traced, during the load's warm-up.
    compiled_settings = tiny_settings.model_copy(update={"torch_compile": True})
    compiled = IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, None, model_id="tiny", device="cpu", settings=compiled_settings,
        compile_backend="aot_eager", compile_dynamic=False,
    )
    assert "torch_compile:aot_eager" in compiled.optimisations
    job = _job(seed=33, refiner_start=1.0)
    compiled_image = compiled.generate([job])[0][0]
    eager_image = engine.generate([job])[0][0]
    assert np.abs(_pixels(compiled_image) - _pixels(eager_image)).max() <= MAX_PIXEL_DIFFERENCE

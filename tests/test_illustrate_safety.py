"""Picture safety on the tiny models: the classifier's real forward pass flags the picture a tiny stand-in was built to
flag (and ones close to it) and passes others, the engine returns the flags with a calm placeholder in place of a
flagged picture, and an image-classification checker flags by its labels."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.illustrate.engine import GenerationJob, IllustrateEngine, PaintedImage
from services.illustrate.placeholder import calm_placeholder
from services.illustrate.safety import SafetyChecker, find_safety_checker
from services.illustrate.tiny import BASE_FOLDER, REFINER_FOLDER, SAFETY_FOLDER
from services.illustrate.tiny_safety import write_flagging_checker
from shared.errors import ModelUnavailable
from shared.settings import Settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def engine(tiny_sdxl: Path, tiny_settings: Settings) -> IllustrateEngine:
    return IllustrateEngine.load(
        tiny_sdxl / BASE_FOLDER, tiny_sdxl / REFINER_FOLDER, model_id="tiny", device="cpu", settings=tiny_settings,
        safety=SafetyChecker.load(find_safety_checker("tiny", tiny_settings), device="cpu"),
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(ASSETS / "photo.jpg").convert("RGB")


def _job(seed: int, **changes: object) -> GenerationJob:
    values: dict = {
        "prompt": "a happy cat", "negative_prompt": None, "count": 1, "width": 64, "height": 64,
        "steps": 3, "guidance_scale": 5.0, "refiner_start": 0.8, "seed": seed,
    }
    values.update(changes)
    return GenerationJob(**values)


def _jpeg_round_trip(picture: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_checker_flags_the_picture_it_was_built_to_flag_and_passes_others(
    tiny_sdxl: Path, photo: Image.Image, tmp_path: Path
) -> None:
    folder = write_flagging_checker(tiny_sdxl / SAFETY_FOLDER, tmp_path / "flags-photo", [photo])
    checker = SafetyChecker.load(folder, device="cpu")
    assert checker.concept_checker
    close = [photo, _jpeg_round_trip(photo), photo.resize((photo.width * 9 // 10, photo.height * 9 // 10))]
    others = [photo.rotate(180), _noise(1), Image.new("RGB", (64, 64), (40, 160, 220)), calm_placeholder(64, 64)]
    assert checker.check(close + others) == [True] * len(close) + [False] * len(others)
    assert checker.check([]) == []


def test_the_tiny_checker_passes_ordinary_pictures(engine: IllustrateEngine, photo: Image.Image) -> None:
    assert engine.safety.check([photo, _noise(2), calm_placeholder(96, 64)]) == [False, False, False]


def test_engine_returns_the_flags_and_a_placeholder_for_a_flagged_picture(
    engine: IllustrateEngine, tiny_sdxl: Path, tmp_path: Path
) -> None:
    painted = engine.paint([_job(seed=11), _job(seed=12)])
    assert [[picture.flagged for picture in pictures] for pictures in painted] == [[False], [False]]
    target = painted[0][0].image
    flagging = SafetyChecker.load(write_flagging_checker(tiny_sdxl / SAFETY_FOLDER, tmp_path / "flags-page", [target]), device="cpu")
    strict = replace(engine, safety=flagging)
    results = strict.paint([_job(seed=11), _job(seed=12)])
    assert results[0][0].flagged and not results[1][0].flagged
    assert isinstance(results[0][0], PaintedImage)
    assert np.array_equal(np.asarray(results[0][0].image), np.asarray(calm_placeholder(64, 64)))
    assert np.array_equal(np.asarray(results[1][0].image), np.asarray(painted[1][0].image))
    images = strict.generate([_job(seed=11)])
    assert np.array_equal(np.asarray(images[0][0]), np.asarray(calm_placeholder(64, 64)))


def test_placeholder_is_soft_and_intentional_at_any_size(tmp_path: Path) -> None:
    for width, height in [(64, 64), (512, 384), (328, 1024)]:
        picture = calm_placeholder(width, height)
        assert picture.size == (width, height) and picture.mode == "RGB"
        pixels = np.asarray(picture).astype(np.int16)
        assert pixels.mean() > 170  # light, never black
        assert 3 < pixels.std() < 40  # drawn (sky, moon, hills), yet soft
        top, bottom = pixels[1, width // 8], pixels[-2, width // 2]
        assert top[2] > top[0]  # a blue-ish sky above
        assert bottom[1] > bottom[0] and bottom[1] > bottom[2]  # green hills below
    saved = tmp_path / "placeholder.png"
    calm_placeholder(512, 384).save(saved)
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), np.asarray(calm_placeholder(512, 384)))
    with pytest.raises(ValueError, match="positive size"):
        calm_placeholder(0, 64)


def _tiny_image_classifier(folder: Path, labels: dict[int, str], favoured: int) -> Path:
    """A random tiny ViT classifier whose bias makes `favoured` the top label of every picture."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        id2label=labels, label2id={name: index for index, name in labels.items()},
    )
    torch.manual_seed(0)
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.bias.zero_()
        model.classifier.bias[favoured] = 50.0
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_an_image_classification_checker_flags_by_its_unsafe_label(tmp_path: Path, photo: Image.Image) -> None:
    labels = {0: "normal", 1: "nsfw"}
    flags_all = SafetyChecker.load(_tiny_image_classifier(tmp_path / "nsfw", labels, favoured=1), device="cpu")
    passes_all = SafetyChecker.load(_tiny_image_classifier(tmp_path / "normal", labels, favoured=0), device="cpu")
    assert not flags_all.concept_checker
    assert flags_all.check([photo, _noise(3)]) == [True, True]
    assert passes_all.check([photo, _noise(3)]) == [False, False]
    with pytest.raises(ModelUnavailable, match="none that marks an unsafe picture"):
        SafetyChecker.load(_tiny_image_classifier(tmp_path / "animals", {0: "cat", 1: "dog"}, favoured=0), device="cpu")


def test_a_missing_safety_classifier_says_what_to_download(tiny_settings: Settings) -> None:
    with pytest.raises(ModelUnavailable, match="fabula models pull gpu") as missing:
        find_safety_checker("stabilityai/stable-diffusion-xl-base-1.0", tiny_settings, checker_id="fabula-tests/absent-checker")
    assert missing.value.param == "FABULA_SAFETY_CHECKER"

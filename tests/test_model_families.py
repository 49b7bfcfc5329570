"""The model families the cpu and gpu profiles name, as tiny random stand-ins, run by their real services over HTTP.

`--profile cpu` names llava-interleave-qwen, SDXL-Turbo (base only) and Qwen2.5-1.5B-Instruct; `--profile gpu`
names LLaVA-1.5 (LLaVA-1.6 works too), SDXL base + refiner and Qwen2.5-7B-Instruct. Each stand-in has its family's
config and processor classes, tokenizer layout and chat template text (see the `tiny_stand_ins` modules); it is built
once per session and served the way a user's downloaded weights are: `Settings(profile=cpu, <role>_model=<folder>)`.
The words and pictures are noise, so the tests check the wiring: the model class, the image-token count, the
prompt the template renders, the picture size, where a turn ends.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import openai
import pytest
from PIL import Image

from services.caption.app import create_app as create_caption_app
from services.caption.tiny_stand_ins import (
    NEXT_PATCH_SIZE,
    NEXT_TILE_SIZE,
    SIGLIP_IMAGE_SIZE,
    SIGLIP_PATCH_SIZE,
    build_llava_interleave_qwen,
    build_llava_next_vicuna,
)
from services.illustrate.app import create_app as create_illustrate_app
from services.illustrate.engine import TURBO_GUIDANCE_SCALE, TURBO_STEPS
from services.illustrate.tiny_stand_ins import FOLDER_NAME as TURBO_FOLDER_NAME
from services.illustrate.tiny_stand_ins import build_sdxl_turbo
from services.llm.app import create_app as create_llm_app
from services.llm.tiny_stand_ins import DEFAULT_SYSTEM_MESSAGE, END_OF_TEXT, MESSAGE_END, build_qwen2_5_instruct
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
CAPTION_PROMPT = "What is in this picture?"
FAST_CAPTION = {"prompt": CAPTION_PROMPT, "max_new_tokens": "6"}
NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 20}},
    "required": ["name"],
    "additionalProperties": False,
}


class Served(NamedTuple):
    url: str
    engine: Any


@contextmanager
def serving(create_app: Callable[..., Any], settings: Settings) -> Iterator[Served]:
    """Start a service on a loopback port, wait until its model has loaded, and yield its URL and engine."""
    app = create_app(settings, device="cpu")
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=120), app.state.holder.error
        yield Served(server.url, app.state.holder.engine)


def cpu_settings(root: Path, **models: str) -> Settings:
    """The cpu profile with its models pointed at local folders, as a user with downloaded weights sets it up
    (the picture safety classifier is checked in its own tests; its real weights are not here)."""
    return Settings(profile=Profile.cpu, cache_dir=root / "cache", data_dir=root / "data", api_key=None, safety_checker=False, **models)


def upload(image: Image.Image | Path) -> dict:
    """A multipart `image` field: a file as it is, or a picture encoded as PNG."""
    if isinstance(image, Path):
        return {"image": (image.name, image.read_bytes(), "image/jpeg")}
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return {"image": ("picture.png", buffer.getvalue(), "image/png")}


def image_tokens(engine: Any, image: Image.Image) -> int:
    """How many `<image>` placeholders the processor expands one image into (one per vision feature)."""
    inputs = engine.processor(images=[image], text=[engine.render_prompt(CAPTION_PROMPT)], return_tensors="pt")
    return int((inputs["input_ids"] == engine.model.config.image_token_index).sum())


@pytest.fixture(scope="session")
def stand_ins_root(session_dir: Path) -> Path:
    return session_dir / "stand-ins"


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """The shipped photograph (see tests/assets/CREDITS.md), 384 × 255: wider than tall, as most photos are."""
    return Image.open(PHOTO).convert("RGB")


@pytest.fixture(scope="session")
def portrait(photo: Image.Image) -> Image.Image:
    return photo.crop((0, 0, 100, 255))


# --- llava-interleave-qwen (cpu profile caption) ---------------------------------------------------------------

@pytest.fixture(scope="session")
def interleave_folder(stand_ins_root: Path) -> Path:
    return build_llava_interleave_qwen(stand_ins_root / "llava-interleave-qwen-0.5b-hf")


@pytest.fixture(scope="module")
def interleave(stand_ins_root: Path, interleave_folder: Path) -> Iterator[Served]:
    with serving(create_caption_app, cpu_settings(stand_ins_root, caption_model=str(interleave_folder))) as served:
        yield served


def test_llava_interleave_qwen_stand_in_is_saved_with_the_real_config(interleave_folder: Path) -> None:
    config = json.loads((interleave_folder / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert (config["vision_feature_select_strategy"], config["vision_feature_layer"]) == ("full", -1)
    assert config["vision_config"]["model_type"] == "siglip_vision_model"
    assert config["text_config"]["model_type"] == "qwen2"
    processor = json.loads((interleave_folder / "processor_config.json").read_text())
    assert processor["image_processor"]["image_processor_type"] == "SiglipImageProcessor"
    assert (processor["vision_feature_select_strategy"], processor["num_additional_image_tokens"]) == ("full", 0)


def test_llava_interleave_qwen_captions_the_photo_over_http(interleave: Served, interleave_folder: Path) -> None:
    response = httpx.post(interleave.url + "/v1/caption", files=upload(PHOTO), data=FAST_CAPTION, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == str(interleave_folder)
    assert isinstance(body["caption"], str) and 1 <= body["new_tokens"] <= 6
    ready = httpx.get(interleave.url + "/readyz", timeout=10).json()
    assert ready["extra"]["architecture"] == "LlavaForConditionalGeneration"


def test_llava_interleave_qwen_prompt_is_chatml_with_a_token_per_patch(interleave: Served, photo: Image.Image) -> None:
    assert interleave.engine.render_prompt(CAPTION_PROMPT) == (
        f"<|im_start|>user\n<image>\n{CAPTION_PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    )
    # "full": every SigLIP patch is an image token, none is dropped as a CLS token (SigLIP has none).
    assert image_tokens(interleave.engine, photo) == (SIGLIP_IMAGE_SIZE // SIGLIP_PATCH_SIZE) ** 2
    assert interleave.engine.caption([photo], [CAPTION_PROMPT], 4)[0].new_tokens <= 4


# --- LLaVA-1.6 / LLaVA-NeXT (Vicuna) ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def llava_next_folder(stand_ins_root: Path) -> Path:
    return build_llava_next_vicuna(stand_ins_root / "llava-v1.6-vicuna-7b-hf")


@pytest.fixture(scope="module")
def llava_next(stand_ins_root: Path, llava_next_folder: Path) -> Iterator[Served]:
    settings = cpu_settings(stand_ins_root, caption_model=str(llava_next_folder)).model_copy(
        update={"blocked_words": ["dragon"], "batch_window_ms": 200}
    )
    with serving(create_caption_app, settings) as served:
        yield served


def test_llava_next_captions_a_wide_and_a_tall_photo_over_http(llava_next: Served, portrait: Image.Image) -> None:
    def caption(image: Image.Image | Path) -> httpx.Response:
        return httpx.post(llava_next.url + "/v1/caption", files=upload(image), data=FAST_CAPTION, timeout=60)

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(caption, [PHOTO, portrait]))
    assert [response.status_code for response in responses] == [200, 200], [response.text for response in responses]
    assert all(1 <= response.json()["new_tokens"] <= 6 for response in responses)
    ready = httpx.get(llava_next.url + "/readyz", timeout=10).json()
    assert ready["extra"]["architecture"] == "LlavaNextForConditionalGeneration"
    assert ready["extra"]["blocked_sequences"] > 0  # "dragon" spelled in SentencePiece pieces


def test_llava_next_tiles_each_image_by_its_shape_and_batches_them(
    llava_next: Served, photo: Image.Image, portrait: Image.Image
) -> None:
    engine = llava_next.engine
    assert engine.render_prompt(CAPTION_PROMPT) == f"USER: <image>\n{CAPTION_PROMPT} ASSISTANT:"
    # Any resolution: the base tile plus a grid of tiles chosen for the image's shape, so the counts differ.
    one_tile = (NEXT_TILE_SIZE // NEXT_PATCH_SIZE) ** 2
    wide, tall = image_tokens(engine, photo), image_tokens(engine, portrait)
    assert wide > one_tile and tall > one_tile and wide != tall
    limits = [3, 5]
    results = engine.caption([photo, portrait], [CAPTION_PROMPT, "Who is there?"], limits)
    assert len(results) == 2
    assert all(result.new_tokens <= limit for result, limit in zip(results, limits, strict=True))


# --- SDXL-Turbo (cpu profile illustrate, base only) ---------------------------------------------------------------

@pytest.fixture(scope="session")
def turbo_folder(stand_ins_root: Path) -> Path:
    return build_sdxl_turbo(stand_ins_root / TURBO_FOLDER_NAME)


@pytest.fixture(scope="module")
def turbo(stand_ins_root: Path, turbo_folder: Path) -> Iterator[Served]:
    settings = cpu_settings(stand_ins_root, illustrate_model=str(turbo_folder), refiner_model="none")
    with serving(create_illustrate_app, settings) as served:
        yield served


def test_sdxl_turbo_stand_in_is_saved_like_the_real_repo(turbo_folder: Path) -> None:
    index = json.loads((turbo_folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["scheduler"] == ["diffusers", "EulerAncestralDiscreteScheduler"]
    assert {"text_encoder", "text_encoder_2", "unet", "vae"} <= set(index)
    scheduler = json.loads((turbo_folder / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["timestep_spacing"], scheduler["steps_offset"]) == ("trailing", 1)


def test_sdxl_turbo_is_served_base_only_with_turbo_defaults(turbo: Served) -> None:
    extra = httpx.get(turbo.url + "/readyz", timeout=10).json()["extra"]
    assert extra["refiner"] is False
    assert (extra["default_steps"], extra["default_guidance_scale"]) == (TURBO_STEPS, TURBO_GUIDANCE_SCALE)


def test_sdxl_turbo_paints_the_asked_size_in_one_unguided_step(turbo: Served) -> None:
    client = openai.OpenAI(base_url=turbo.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    result = client.images.generate(
        prompt="a fox reading under a tree, watercolor", size="96x64", response_format="b64_json",
        extra_body={"num_inference_steps": 1, "guidance_scale": 0.0, "seed": 3},
    )
    picture = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert picture.size == (96, 64)
    assert result.data[0].model_extra["seed"] == 3


# --- Qwen2.5-Instruct (cpu and gpu profile llm) -------------------------------------------------------------------

@pytest.fixture(scope="session")
def qwen_folder(stand_ins_root: Path) -> Path:
    return build_qwen2_5_instruct(stand_ins_root / "Qwen2.5-1.5B-Instruct")


@pytest.fixture(scope="module")
def qwen(stand_ins_root: Path, qwen_folder: Path) -> Iterator[Served]:
    with serving(create_llm_app, cpu_settings(stand_ins_root, llm_model=str(qwen_folder))) as served:
        yield served


@pytest.fixture(scope="module")
def qwen_client(qwen: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=qwen.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_qwen2_5_prompt_gets_the_default_system_message(
    qwen: Served, qwen_client: openai.OpenAI, qwen_folder: Path
) -> None:
    messages = [{"role": "user", "content": "Name a cat."}]
    completion = qwen_client.chat.completions.create(model=str(qwen_folder), messages=messages, max_tokens=8, seed=1)
    assert completion.model == str(qwen_folder)
    assert isinstance(completion.choices[0].message.content, str)
    prompt_ids = qwen.engine.encode_prompt(messages)
    assert completion.usage.prompt_tokens == len(prompt_ids)
    assert qwen.engine.tokenizer.decode(prompt_ids) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_MESSAGE}<|im_end|>\n<|im_start|>user\nName a cat.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    own_system = qwen.engine.encode_prompt([{"role": "system", "content": "Be brief."}, *messages])
    assert DEFAULT_SYSTEM_MESSAGE not in qwen.engine.tokenizer.decode(own_system)


def test_qwen2_5_turn_ends_at_either_end_token(qwen: Served) -> None:
    tokenizer = qwen.engine.tokenizer
    assert qwen.engine.stop_token_ids == tokenizer.convert_tokens_to_ids([MESSAGE_END, END_OF_TEXT])
    assert tokenizer.bos_token is None and tokenizer.eos_token == MESSAGE_END


def test_qwen2_5_stream_concatenates_to_the_completion(qwen_client: openai.OpenAI, qwen_folder: Path) -> None:
    # A byte-level token can end inside a character (Hangul, emoji); the streamed pieces must add up all the same.
    messages = [{"role": "user", "content": "고양이 😀"}]
    request = {"model": str(qwen_folder), "messages": messages, "max_tokens": 24, "seed": 4}
    whole = qwen_client.chat.completions.create(**request).choices[0].message.content
    chunks = list(qwen_client.chat.completions.create(**request, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == whole


def test_qwen2_5_json_schema_answer_validates(qwen_client: openai.OpenAI, qwen_folder: Path) -> None:
    completion = qwen_client.chat.completions.create(
        model=str(qwen_folder),
        messages=[{"role": "user", "content": "Name a cat."}],
        max_tokens=40,
        seed=2,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": NAME_SCHEMA, "strict": True}},
    )
    answer = json.loads(completion.choices[0].message.content)
    assert set(answer) == {"name"} and 1 <= len(answer["name"]) <= 20
    assert completion.choices[0].finish_reason == "stop"

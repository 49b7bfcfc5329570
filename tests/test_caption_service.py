"""The caption service on a tiny random LLaVA, over real HTTP on loopback.

The tiny model writes gibberish, so these tests check behaviour (shapes, limits, errors, metrics, batching,
blocking), never what the caption says.
"""

from __future__ import annotations

import asyncio
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from PIL import Image

from services.caption.app import SPEC, create_app, resolve_caption_model
from services.caption.blocked_words import blocked_token_sequences, token_spellings
from services.caption.engine import DEFAULT_PROMPT, CaptionEngine, CaptionItem
from services.caption.tiny import build_tiny_llava
from shared.images import load_image
from shared.metrics import ServiceMetrics
from shared.profiles import tiny_dir
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings

FAST = {"max_new_tokens": "8"}


@contextmanager
def caption_server(settings: Settings) -> Iterator[str]:
    """Start the service, wait until its model has loaded (or failed to), and yield its base URL."""
    app = create_app(settings)
    with ServerThread(app) as server:
        app.state.holder.wait(timeout=120)
        yield server.url


def upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict:
    return {"image": (name, data, content_type)}


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A 1-bit PNG that claims width×height pixels: its header alone must be enough to refuse it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b"")


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="session")
def caption_model(tiny_settings: Settings) -> tuple[str, Path]:
    return resolve_caption_model(tiny_settings)


@pytest.fixture(scope="module")
def client(tiny_settings: Settings, caption_model: tuple[str, Path]) -> Iterator[httpx.Client]:
    with caption_server(tiny_settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def engine(tiny_settings: Settings, caption_model: tuple[str, Path]) -> CaptionEngine:
    model_id, folder = caption_model
    return CaptionEngine.load(folder, model_id=model_id, device="cpu", settings=tiny_settings)


# --- the happy path --------------------------------------------------------------------------------------------------

def test_caption_describes_the_shipped_photo(client: httpx.Client, photo_bytes: bytes) -> None:
    response = client.post("/v1/caption", files=upload(photo_bytes))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["caption"].strip()
    assert body["model"] == "tiny"
    assert body["prompt"] == DEFAULT_PROMPT
    assert 1 <= body["new_tokens"] <= 96
    timings = body["timings"]
    assert timings["inference_seconds"] > 0
    assert timings["total_seconds"] >= timings["inference_seconds"] >= 0
    assert timings["queue_seconds"] >= 0


def test_caption_takes_a_prompt_and_a_token_limit(client: httpx.Client, photo_bytes: bytes) -> None:
    question = {"prompt": "  What animal is this?  ", "max_new_tokens": "3"}
    response = client.post("/v1/caption", files=upload(photo_bytes), data=question)
    assert response.status_code == 200, response.text
    assert response.json()["prompt"] == "What animal is this?"
    assert 1 <= response.json()["new_tokens"] <= 3


def test_greedy_captions_are_repeatable(client: httpx.Client, photo_bytes: bytes) -> None:
    first, second = (client.post("/v1/caption", files=upload(photo_bytes), data=FAST).json() for _ in range(2))
    assert first["caption"] == second["caption"]


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; the service turns it upright
    return encode(Image.new("RGB", (64, 32), "orange"), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("animated.gif", encode(Image.new("RGB", (48, 48), "red"), "GIF", save_all=True,
                                append_images=[Image.new("RGB", (48, 48), "blue")], duration=80), "image/gif"),
        ("transparent.png", encode(Image.new("RGBA", (48, 48), (0, 128, 0, 100)), "PNG"), "image/png"),
        ("rotated.jpg", rotated_jpeg(), "image/jpeg"),
    ],
    ids=["animated-gif", "rgba-png", "exif-rotated-jpeg"],
)
def test_unusual_but_valid_images_are_accepted(client: httpx.Client, name: str, data: bytes, content_type: str) -> None:
    response = client.post("/v1/caption", files=upload(data, name, content_type), data=FAST)
    assert response.status_code == 200, response.text
    assert response.json()["new_tokens"] >= 1


# --- bad input: a 4xx whose `error.param` names the field ---------------------------------------------------------

class BadRequest(NamedTuple):
    files: Callable[[bytes], dict | None]
    data: dict[str, str]
    status: int
    param: str
    says: str


def photo_file(photo: bytes) -> dict:
    return upload(photo)


BAD_REQUESTS = {
    "zero-byte-upload": BadRequest(lambda photo: upload(b""), FAST, 400, "image", "empty"),
    "text-file": BadRequest(
        lambda photo: upload(b"Once upon a time.\n", "story.txt", "text/plain"), FAST, 400, "image", "not an image"
    ),
    "truncated-jpeg": BadRequest(lambda photo: upload(photo[: len(photo) // 2]), FAST, 400, "image", "truncated"),
    "decompression-bomb": BadRequest(
        lambda photo: upload(png_header(20_000, 20_000), "bomb.png", "image/png"), FAST, 413, "image", "too many pixels"
    ),
    "over-pixel-limit": BadRequest(
        lambda photo: upload(png_header(8_000, 6_000), "big.png", "image/png"), FAST, 413, "image", "FABULA_MAX_IMAGE_PIXELS"
    ),
    "missing-image": BadRequest(lambda photo: None, {"prompt": "Describe it."}, 400, "image", "required"),
    "zero-new-tokens": BadRequest(photo_file, {"max_new_tokens": "0"}, 400, "max_new_tokens", "between 1 and 512"),
    "too-many-new-tokens": BadRequest(photo_file, {"max_new_tokens": "513"}, 400, "max_new_tokens", "FABULA_MAX_CAPTION_TOKENS"),
    "new-tokens-not-a-number": BadRequest(photo_file, {"max_new_tokens": "many"}, 400, "max_new_tokens", "integer"),
    "prompt-too-long": BadRequest(photo_file, {"prompt": "x" * 4001}, 400, "prompt", "FABULA_MAX_PROMPT_CHARS"),
    "prompt-with-image-placeholder": BadRequest(photo_file, {"prompt": "<image> Describe it."}, 400, "prompt", "placeholder"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_naming_the_field(client: httpx.Client, photo_bytes: bytes, case: str) -> None:
    bad = BAD_REQUESTS[case]
    response = client.post("/v1/caption", files=bad.files(photo_bytes), data=bad.data)
    assert response.status_code == bad.status, response.text
    error = response.json()["error"]
    assert error["param"] == bad.param
    assert bad.says in error["message"]
    assert bad.param in error["message"]


@pytest.fixture(scope="module")
def small_upload_url(tiny_settings: Settings, caption_model: tuple[str, Path]) -> Iterator[str]:
    with caption_server(tiny_settings.model_copy(update={"max_upload_bytes": 8_000})) as url:
        yield url


def multipart_body(image: bytes, boundary: str = "fabula-test-boundary") -> tuple[bytes, dict[str, str]]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_upload_over_the_byte_limit_is_refused(small_upload_url: str, photo_bytes: bytes) -> None:
    assert len(photo_bytes) > 8_000
    response = httpx.post(small_upload_url + "/v1/caption", files=upload(photo_bytes), data=FAST)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["param"] == "image"
    assert "FABULA_MAX_UPLOAD_BYTES" in response.json()["error"]["message"]


def test_huge_body_is_refused_before_it_is_read(small_upload_url: str) -> None:
    body, headers = multipart_body(b"\xff" * 600_000)
    declared = httpx.post(small_upload_url + "/v1/caption", content=body, headers=headers)
    chunked = httpx.post(small_upload_url + "/v1/caption", headers=headers,
                         content=(body[start:start + 65_536] for start in range(0, len(body), 65_536)))
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["param"] == "image"
        assert response.headers["x-request-id"]
    small = encode(Image.new("RGB", (64, 64), "teal"), "PNG")
    response = httpx.post(small_upload_url + "/v1/caption", files=upload(small, "small.png", "image/png"), data=FAST)
    assert response.status_code == 200, response.text


# --- readiness, metrics, OpenAPI (the shared contract is in test_service_kit.py) ----------------------------------------------------------------

def test_readiness_is_503_when_the_model_cannot_load(tmp_path: Path, photo_bytes: bytes) -> None:
    settings = Settings(profile=Profile.cpu, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data",
                        caption_model="nobody/absent-caption-model")
    with caption_server(settings) as url:
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert "absent-caption-model" in ready.json()["error"]
        response = httpx.post(url + "/v1/caption", files=upload(photo_bytes), data=FAST)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "model_not_ready"
        assert httpx.get(url + "/healthz").status_code == 200


def test_metrics_show_request_latency_and_batch_size(client: httpx.Client, photo_bytes: bytes) -> None:
    assert client.post("/v1/caption", files=upload(photo_bytes), data=FAST).status_code == 200
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "fabula_request_seconds_count", route="/v1/caption", status="200") >= 1
    assert metric_value(metrics, "fabula_batch_size_count", service="caption") >= 1
    assert metric_value(metrics, "fabula_batch_size_sum", service="caption") >= 1
    assert metric_value(metrics, "fabula_queue_wait_seconds_count", service="caption") >= 1
    assert metric_value(metrics, "fabula_pipeline_calls_total", service="caption") >= 1


def test_openapi_documents_the_multipart_fields(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/caption"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    assert {"image", "prompt", "max_new_tokens"} <= set(schema["properties"])
    assert schema["required"] == ["image"]


# --- blocked words, batching, disconnects --------------------------------------------------------------------------

def test_blocked_words_are_never_generated(client: httpx.Client, tiny_settings: Settings, photo_bytes: bytes) -> None:
    request = {"files": upload(photo_bytes), "data": {"max_new_tokens": "32"}}
    before = client.post("/v1/caption", **request).json()["caption"]
    words = sorted(set(re.findall(r"[A-Za-z0-9]{2,}", before)))
    assert words, before
    with caption_server(tiny_settings.model_copy(update={"blocked_words": words})) as url:
        after = httpx.post(url + "/v1/caption", **request).json()
        ready = httpx.get(url + "/readyz").json()
    assert ready["extra"]["blocked_sequences"] >= len(words)
    assert after["caption"] != before
    found = set(re.findall(r"[A-Za-z0-9]+", after["caption"]))
    assert not {word.lower() for word in words} & {word.lower() for word in found}, after["caption"]


def test_concurrent_requests_all_get_their_caption(client: httpx.Client, photo_bytes: bytes) -> None:
    solo = client.post("/v1/caption", files=upload(photo_bytes), data=FAST).json()["caption"]
    before = client.get("/metrics").text

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=client.base_url, timeout=60) as http:
            return await asyncio.gather(*(http.post("/v1/caption", files=upload(photo_bytes), data=FAST) for _ in range(4)))

    responses = asyncio.run(send_all())
    assert [response.status_code for response in responses] == [200] * 4
    assert {response.json()["caption"] for response in responses} == {solo}
    after = client.get("/metrics").text

    def grew(name: str) -> float:
        return metric_value(after, name, service="caption") - metric_value(before, name, service="caption")

    served, calls = grew("fabula_batch_size_sum"), grew("fabula_pipeline_calls_total")
    assert served == 4
    assert 1 <= calls <= 4


async def test_batcher_serves_requests_queued_together_in_one_pipeline_call(engine: CaptionEngine, photo_bytes: bytes) -> None:
    picture = load_image(photo_bytes, max_bytes=10**7, max_pixels=10**7)
    metrics = ServiceMetrics("caption")
    assert SPEC.batch is not None
    batcher = SPEC.batch.build(lambda: engine, name="caption", metrics=metrics, settings=Settings(max_batch_size=8, batch_window_ms=0))
    batcher.start()
    try:
        prompts = ["Describe it.", "What is in this picture, and what colours does it have?", "Who is there?"]
        results = await asyncio.gather(*(batcher.submit(CaptionItem(picture, prompt, limit)) for prompt, limit in zip(prompts, [4, 6, 2], strict=True)))
    finally:
        await batcher.stop()
    assert [result.batch_requests for result in results] == [3, 3, 3]
    assert [result.result.new_tokens <= limit for result, limit in zip(results, [4, 6, 2], strict=True)] == [True] * 3
    assert metric_value(metrics.render().decode(), "fabula_pipeline_calls_total") == 1


def test_a_client_that_disconnects_mid_caption_does_not_break_the_service(client: httpx.Client, photo_bytes: bytes) -> None:
    with pytest.raises(httpx.TimeoutException):
        httpx.post(str(client.base_url.join("/v1/caption")), files=upload(photo_bytes), data={"max_new_tokens": "512"},
                   timeout=httpx.Timeout(30, read=0.05))
    response = client.post("/v1/caption", files=upload(photo_bytes), data=FAST)
    assert response.status_code == 200, response.text
    assert client.get("/healthz").status_code == 200


# --- the engine, the tiny model, blocked-word spellings -----------------------------------------------------------

def test_engine_renders_the_processor_chat_template(engine: CaptionEngine) -> None:
    rendered = engine.render_prompt("What is this?")
    assert rendered.count("<image>") == 1
    assert rendered.index("<image>") < rendered.index("What is this?") < rendered.index("ASSISTANT:")
    assert engine.info().model_dump() | {"device": "cpu", "dtype": "float32"} == engine.info().model_dump()


def test_engine_left_pads_a_batch_so_each_caption_matches_its_solo_run(engine: CaptionEngine, photo_bytes: bytes) -> None:
    photo = load_image(photo_bytes, max_bytes=10**7, max_pixels=10**7)
    square = Image.new("RGB", (64, 64), "navy")
    prompts = ["Describe it.", "Tell me everything you can see in this picture, please."]
    batch = engine.caption([photo, square], prompts, [5, 3])
    solo = [engine.caption([photo], prompts[:1], 5)[0], engine.caption([square], prompts[1:], 3)[0]]
    assert batch == solo
    assert batch[0].new_tokens <= 5 and batch[1].new_tokens <= 3


def test_tiny_model_build_is_reproducible_idempotent_and_race_safe(tmp_path: Path, caption_model: tuple[str, Path]) -> None:
    _, original = caption_model
    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(build_tiny_llava, [tmp_path / "raced", tmp_path / "raced"]))
    assert folders == [tmp_path / "raced"] * 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raced"]
    weights = tmp_path / "raced" / "model.safetensors"
    assert weights.read_bytes() == (original / "model.safetensors").read_bytes()
    stamp = weights.stat().st_mtime_ns
    build_tiny_llava(tmp_path / "raced")
    assert weights.stat().st_mtime_ns == stamp


def test_tiny_model_lives_in_the_profile_cache(tiny_settings: Settings, caption_model: tuple[str, Path]) -> None:
    assert caption_model == ("tiny", tiny_dir("caption", tiny_settings))
    assert (caption_model[1] / "chat_template.jinja").is_file()


def test_token_spellings_lists_every_way_to_write_a_word() -> None:
    assert token_spellings("ab", {"a": 0, "b": 1, "ab": 2}) == [[2], [0, 1]]
    assert token_spellings("abc", {"a": 0, "b": 1}) == []


def test_blocked_sequences_cover_case_and_spacing_variants(engine: CaptionEngine) -> None:
    tokenizer = engine.processor.tokenizer
    sequences = blocked_token_sequences(["cat", "  "], tokenizer)
    spelled = {tokenizer.decode(sequence) for sequence in sequences}
    assert spelled == {" cat", "cat", " Cat", "Cat", " CAT", "CAT"}
    assert tokenizer(" cat", add_special_tokens=False)["input_ids"] in sequences

"""The illustration service over real HTTP on loopback, on the tiny SDXL base + refiner."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from services.illustrate.app import create_app, resolve_illustrate_models
from services.illustrate.engine import GenerationJob, IllustrateEngine
from shared.batching import MicroBatcher
from shared.errors import ModelUnavailable
from shared.metrics import ServiceMetrics
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings
from tests.conftest import metric_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENDPOINT = "/v1/images/generations"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXEL_DIFFERENCE = 2  # out of 255: batched matrix products round differently, seeds do not


@pytest.fixture(scope="module")
def service_settings(tiny_settings: Settings) -> Settings:
    return tiny_settings.model_copy(update={
        "default_inference_steps": 2, "batch_window_ms": 150, "max_images_per_request": 4, "max_prompt_chars": 200,
        "max_upload_bytes": 20_000,
    })


def _start(settings: Settings) -> ServerThread:
    app = create_app(settings, device="cpu")
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=300), app.state.holder.error
    return server


@pytest.fixture(scope="module")
def service(service_settings: Settings) -> Iterator[ServerThread]:
    server = _start(service_settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(service: ServerThread) -> IllustrateEngine:
    return service.server.config.app.state.holder.engine


def _post(service: ServerThread, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(service.url + ENDPOINT, json=body, timeout=timeout)


def _pixels(b64_json: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64_json))).convert("RGB")).astype(np.int16)


def _metric(service: ServerThread, name: str) -> float:
    text = httpx.get(service.url + "/metrics").text
    match = re.search(rf'^{name}\{{service="illustrate"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def _concurrently(service: ServerThread, bodies: list[dict]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(lambda body: _post(service, body), bodies))


def test_readyz_reports_the_loaded_model(service: ServerThread) -> None:
    body = httpx.get(service.url + "/readyz").json()
    assert body["status"] == "ready"
    assert body["model"] == "tiny" and body["extra"]["refiner"] is True


def test_openapi_document_describes_the_request_body(service: ServerThread) -> None:
    operation = httpx.get(service.url + "/openapi.json").json()["paths"][ENDPOINT]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"prompt", "n", "size", "response_format", "seed", "refiner_start"} <= set(schema["properties"])


def test_openai_client_gets_two_png_images(service: ServerThread) -> None:
    client = openai.OpenAI(base_url=service.url + "/v1", api_key="x")
    result = client.images.generate(prompt="a fox in the forest", n=2, size="64x64", response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        raw = base64.b64decode(item.b64_json)
        assert raw.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(raw))
        image.load()
        assert image.size == (64, 64)
    seeds = [item.model_extra["seed"] for item in result.data]
    assert seeds[1] == seeds[0] + 1


def test_openai_client_passes_extras(service: ServerThread) -> None:
    client = openai.OpenAI(base_url=service.url + "/v1", api_key="x")
    result = client.images.generate(
        prompt="a cat", size="64x64", response_format="b64_json",
        extra_body={"seed": 7, "style": "watercolor storybook", "negative_prompt": "blurry", "num_inference_steps": 3},
    )
    assert result.data[0].model_extra["seed"] == 7
    assert result.data[0].revised_prompt == "a cat, watercolor storybook"


def test_concurrent_requests_share_pipeline_calls(service: ServerThread) -> None:
    calls_before = _metric(service, "fabula_pipeline_calls_total")
    requests_before = _metric(service, "fabula_batch_size_sum")
    responses = _concurrently(service, [{"prompt": f"page {index}", "size": "64x64", "seed": index} for index in range(6)])
    assert [response.status_code for response in responses] == [200] * 6
    calls = _metric(service, "fabula_pipeline_calls_total") - calls_before
    assert _metric(service, "fabula_batch_size_sum") - requests_before == 6
    assert 1 <= calls < 6


def test_different_sizes_are_never_merged(service: ServerThread) -> None:
    calls_before = _metric(service, "fabula_pipeline_calls_total")
    sizes = ["64x64", "72x64", "64x64", "72x64"]
    responses = _concurrently(service, [{"prompt": "a boy", "size": size} for size in sizes])
    # The engine refuses a mixed batch, so a merge would have failed these requests.
    assert [response.status_code for response in responses] == [200] * 4
    for size, response in zip(sizes, responses, strict=True):
        width, height = map(int, size.split("x"))
        assert _pixels(response.json()["data"][0]["b64_json"]).shape == (height, width, 3)
    assert _metric(service, "fabula_pipeline_calls_total") - calls_before >= 2


def test_same_seed_gives_same_image_alone_and_in_a_batch(service: ServerThread) -> None:
    request = {"prompt": "a red bird", "size": "64x64"}
    alone = _pixels(_post(service, {**request, "seed": 42}).json()["data"][0]["b64_json"])
    second_of_two = _pixels(_post(service, {**request, "seed": 41, "n": 2}).json()["data"][1]["b64_json"])
    assert np.abs(alone - second_of_two).max() <= MAX_PIXEL_DIFFERENCE
    batch = _concurrently(service, [{**request, "seed": seed} for seed in (42, 3, 4)])
    in_batch = _pixels(batch[0].json()["data"][0]["b64_json"])
    assert np.abs(alone - in_batch).max() <= MAX_PIXEL_DIFFERENCE
    other = _pixels(batch[1].json()["data"][0]["b64_json"])
    assert np.abs(alone - other).max() > MAX_PIXEL_DIFFERENCE


def test_refiner_start_one_paints_with_the_base_only(service: ServerThread, engine: IllustrateEngine) -> None:
    request = {"prompt": "a green tree", "size": "64x64", "seed": 11, "num_inference_steps": 4}
    base_only = _post(service, {**request, "refiner_start": 1.0})
    assert base_only.status_code == 200
    assert engine.handoff_steps(4, 0.5) == (2, 2)
    handed_off = _post(service, {**request, "refiner_start": 0.5})
    difference = np.abs(_pixels(base_only.json()["data"][0]["b64_json"]) - _pixels(handed_off.json()["data"][0]["b64_json"]))
    assert difference.max() > MAX_PIXEL_DIFFERENCE


BAD_REQUESTS = [
    pytest.param({"prompt": "a", "size": "65x64"}, "size", id="size-not-multiple-of-8"),
    pytest.param({"prompt": "a", "size": "64x64x3"}, "size", id="size-three-parts"),
    pytest.param({"prompt": "a", "size": "8x8"}, "size", id="size-too-small"),
    pytest.param({"prompt": "a", "size": "100000x64"}, "size", id="size-too-large"),
    pytest.param({"prompt": "a", "n": 0}, "n", id="n-zero"),
    pytest.param({"prompt": "a", "n": 5}, "n", id="n-over-limit"),
    pytest.param({"prompt": "a", "num_inference_steps": 151}, "num_inference_steps", id="steps-over-limit"),
    pytest.param({"prompt": "a", "response_format": "url"}, "response_format", id="response-format-url"),
    pytest.param({"prompt": "x" * 201}, "prompt", id="prompt-too-long"),
    pytest.param({"prompt": "a", "negative_prompt": "x" * 201}, "negative_prompt", id="negative-too-long"),
    pytest.param({"prompt": "   "}, "prompt", id="prompt-blank"),
    pytest.param({"size": "64x64"}, "prompt", id="prompt-missing"),
    pytest.param({"prompt": "a", "guidance_scale": -1}, "guidance_scale", id="guidance-negative"),
    pytest.param({"prompt": "a", "refiner_start": 0}, "refiner_start", id="refiner-start-zero"),
    pytest.param('{"prompt": "a", ', "body", id="malformed-json"),
    pytest.param("[1, 2]", "body", id="json-not-an-object"),
    pytest.param("", "body", id="empty-body"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
def test_bad_request_is_refused_before_model_work(service: ServerThread, body: dict | str, param: str) -> None:
    calls_before = _metric(service, "fabula_pipeline_calls_total")
    content = body if isinstance(body, str) else None
    response = httpx.post(
        service.url + ENDPOINT, content=content, json=None if content is not None else body,
        headers={"content-type": "application/json"}, timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert f"`{param}`" in error["message"] or param == "body"
    assert _metric(service, "fabula_pipeline_calls_total") == calls_before


def test_oversized_body_is_refused_before_it_is_read_whole(service: ServerThread) -> None:
    response = _post(service, {"prompt": "a", "negative_prompt": "x" * 200_000})
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "body"


async def test_disconnected_client_leaves_the_batch_and_service_intact(service: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
        request = {"prompt": "a small dog", "size": "64x64"}
        staying = [asyncio.create_task(client.post(ENDPOINT, json={**request, "seed": seed})) for seed in (1, 2)]
        leaving = asyncio.create_task(client.post(ENDPOINT, json={**request, "seed": 3}))
        await asyncio.sleep(0.05)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        responses = await asyncio.gather(*staying)
        assert [response.status_code for response in responses] == [200, 200]
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post(ENDPOINT, json={**request, "seed": 4})).status_code == 200


async def test_batcher_merges_compatible_jobs_and_drops_cancelled_ones(engine: IllustrateEngine) -> None:
    calls: list[list[GenerationJob]] = []

    def paint(jobs: list[GenerationJob]) -> list[list[Image.Image]]:
        calls.append(jobs)
        return engine.generate(jobs)

    metrics = ServiceMetrics("illustrate-test")
    batcher: MicroBatcher[GenerationJob, list[Image.Image]] = MicroBatcher(
        paint, name="illustrate", metrics=metrics, window_seconds=0.2, max_batch_weight=8,
    )
    batcher.start()
    try:
        def job(seed: int, width: int) -> GenerationJob:
            return GenerationJob(
                prompt="a moon", negative_prompt=None, count=1, width=width, height=64, steps=2,
                guidance_scale=5.0, refiner_start=0.8, seed=seed,
            )

        jobs = [job(seed, width) for seed, width in ((1, 64), (2, 64), (3, 72), (4, 64))]
        tasks = [asyncio.create_task(batcher.submit(each, key=each.batch_key, weight=each.count)) for each in jobs]
        await asyncio.sleep(0)
        tasks[1].cancel()
        outcomes = await asyncio.gather(tasks[0], tasks[2], tasks[3])
    finally:
        await batcher.stop()
    assert [outcome.result[0].size for outcome in outcomes] == [(64, 64), (72, 64), (64, 64)]
    assert sorted(len(batch) for batch in calls) == [1, 2]
    for batch in calls:
        assert len({job.batch_key for job in batch}) == 1
    assert sorted(job.seed for batch in calls for job in batch) == [1, 3, 4]


# --- what one request may cost, and the size left out ------------------------------------------------------------

def test_a_1024_square_on_the_tiny_profile_is_refused_with_the_size_to_ask_for(service: ServerThread) -> None:
    calls_before = _metric(service, "fabula_pipeline_calls_total")
    response = _post(service, {"prompt": "a fox reading under a tree", "size": "1024x1024", "num_inference_steps": 30})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "size"
    assert "1024x1024 × 30 steps × 1 image is 31,457,280 pixel-steps" in error["message"]
    assert "at most 524,288 (FABULA_MAX_PIXEL_STEPS" in error["message"]
    suggested = re.search(r"Ask for `size` (\d+)x\1 or smaller at 30 steps", error["message"])
    assert suggested and int(suggested.group(1)) ** 2 * 30 <= 524_288 < (int(suggested.group(1)) + 8) ** 2 * 30
    assert _metric(service, "fabula_pipeline_calls_total") == calls_before
    fitting = _post(service, {"prompt": "a fox", "size": f"{suggested.group(1)}x{suggested.group(1)}", "num_inference_steps": 30})
    assert fitting.status_code == 200, fitting.text


def test_the_cost_limit_is_width_height_steps_and_n_together(service: ServerThread) -> None:
    assert _post(service, {"prompt": "a", "size": "128x128", "num_inference_steps": 8, "n": 4}).status_code == 200
    over = _post(service, {"prompt": "a", "size": "128x128", "num_inference_steps": 9, "n": 4})
    assert over.status_code == 400 and "128x128 × 9 steps × 4 images is 589,824 pixel-steps" in over.json()["error"]["message"]
    settings = Settings(profile=Profile.gpu, max_pixel_steps=None)
    from services.illustrate.validation import pixel_step_limit

    assert pixel_step_limit(settings) == 1024 * 1024 * 40 * 4
    assert pixel_step_limit(settings.model_copy(update={"max_pixel_steps": 1000})) == 1000


def test_size_left_out_paints_the_tiny_profile_default_of_64(service: ServerThread) -> None:
    response = _post(service, {"prompt": "a lighthouse", "seed": 5})
    assert response.status_code == 200, response.text
    assert _pixels(response.json()["data"][0]["b64_json"]).shape == (64, 64, 3)


async def test_a_client_that_leaves_before_its_turn_is_never_painted(service_settings: Settings) -> None:
    app = create_app(service_settings.model_copy(update={"batch_window_ms": 600_000, "max_batch_size": 2}), device="cpu")
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=300), app.state.holder.error
        batcher = app.state.batcher
        request = {"prompt": "a small dog", "size": "64x64"}
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            leaving = asyncio.create_task(client.post(ENDPOINT, json={**request, "seed": 3}))
            while batcher.queued < 1:
                await asyncio.sleep(0.01)
            leaving.cancel()
            await asyncio.gather(leaving, return_exceptions=True)
            while batcher.queued > 0:
                await asyncio.sleep(0.01)
            # Two requests fill a call of two at once, so they run without waiting for the window.
            staying = await asyncio.gather(*(client.post(ENDPOINT, json={**request, "seed": seed}) for seed in (1, 2)))
            metrics = (await client.get("/metrics")).text
    assert [response.status_code for response in staying] == [200, 200]
    assert metric_value(metrics, "fabula_requests_dropped_total", reason="disconnected") == 1
    assert metric_value(metrics, "fabula_batch_size_sum") == 2
    assert metric_value(metrics, "fabula_generated_items_total") == 2


def test_a_request_past_its_deadline_answers_504_and_is_not_painted(service_settings: Settings) -> None:
    app = create_app(service_settings.model_copy(update={"batch_window_ms": 600_000, "max_batch_size": 8}), device="cpu")
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=300), app.state.holder.error
        response = httpx.post(server.url + ENDPOINT, json={"prompt": "a", "size": "64x64"}, headers={"X-Request-Timeout": "0.2"}, timeout=60)
        metrics = httpx.get(server.url + "/metrics").text
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "deadline_exceeded"
    assert metric_value(metrics, "fabula_requests_dropped_total", reason="deadline") == 1
    assert metric_value(metrics, "fabula_pipeline_calls_total") == 0


def test_resolve_models_builds_tiny_and_fails_fast_without_weights(service_settings: Settings) -> None:
    model_id, base, refiner = resolve_illustrate_models(service_settings)
    assert model_id == "tiny" and (base / "model_index.json").is_file() and refiner is not None
    assert resolve_illustrate_models(service_settings.model_copy(update={"refiner_model": "none"}))[2] is None
    gpu = service_settings.model_copy(update={"profile": Profile.gpu})
    with pytest.raises(ModelUnavailable) as raised:
        resolve_illustrate_models(gpu)
    assert raised.value.param == "FABULA_ILLUSTRATE_MODEL"


# Common words, one tiny-tokenizer token each as in CLIP: prompt plus `style` come to 85 tokens, past the 77 read.
LONG_PROMPT = (
    "a small red fox and a little girl share a picnic under a big oak tree at sunset, two birds sing in the branches, "
    "a blue river runs past the old stone bridge, three sheep sleep on the green hill"
)
LONG_STYLE = (
    "soft watercolor children's book illustration, gentle washes, paper texture, warm light, detailed background, "
    "bold ink lines, flat vivid colors, cel shading, studio quality, golden light, wide shot"
)
WARNING_SENTENCE = re.compile(r"^The (prompt|negative prompt) is (\d+) tokens; the text encoders read 77, so the words after '([^']+)' were not used\.$")


def test_prompt_past_the_text_encoders_window_is_painted_with_a_warning(
    service: ServerThread, engine: IllustrateEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.illustrate.app")
    body = {"prompt": LONG_PROMPT, "style": LONG_STYLE, "size": "64x64", "seed": 3}
    response = httpx.post(service.url + ENDPOINT, json=body, headers={"x-request-id": "long-prompt-1"}, timeout=120)
    assert response.status_code == 200
    full_prompt = f"{LONG_PROMPT}, {LONG_STYLE}"
    [warning] = response.json()["warnings"]
    match = WARNING_SENTENCE.match(warning)
    assert match, warning
    assert match.group(1) == "prompt" and int(match.group(2)) == len(engine.base.tokenizer(full_prompt, verbose=False).input_ids) > 77
    read_until = full_prompt.index(match.group(3)) + len(match.group(3))
    assert len(engine.base.tokenizer(full_prompt[:read_until], verbose=False).input_ids) <= 77
    assert len(engine.base.tokenizer(full_prompt[: read_until + 12], verbose=False).input_ids) > 77 - 2
    [record] = [record for record in caplog.records if record.levelno == logging.WARNING and "text encoders" in record.getMessage()]
    assert record.fields["request_id"] == response.headers["x-request-id"] == "long-prompt-1"
    assert record.fields["field"] == "prompt" and record.fields["tokens"] == int(match.group(2)) and record.fields["window"] == 77
    assert full_prompt.endswith(record.fields["unused_text"])


def test_negative_prompt_past_the_window_is_reported_too(service: ServerThread) -> None:
    negative = ", ".join(["red", "bad", "dim", "low", "odd"] * 8)  # 80 words and commas in 198 characters
    response = _post(service, {"prompt": "a fox", "negative_prompt": negative, "size": "64x64"})
    assert response.status_code == 200
    [warning] = response.json()["warnings"]
    assert warning.startswith("The negative prompt is ")


def test_openai_client_parses_the_warnings(service: ServerThread) -> None:
    client = openai.OpenAI(base_url=service.url + "/v1", api_key="x")
    result = client.images.generate(prompt=LONG_PROMPT, size="64x64", response_format="b64_json", extra_body={"style": LONG_STYLE})
    assert len(result.data) == 1 and base64.b64decode(result.data[0].b64_json).startswith(PNG_SIGNATURE)
    assert WARNING_SENTENCE.match(result.model_extra["warnings"][0])


def test_prompt_within_the_window_gets_no_warning(service: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.illustrate.app")
    response = _post(service, {"prompt": LONG_PROMPT, "negative_prompt": "blurry, text, letters", "size": "64x64"})
    assert response.status_code == 200
    assert response.json()["warnings"] == []
    assert not [record for record in caplog.records if "text encoders" in record.getMessage()]


def test_book_picture_prompts_fit_the_tiny_text_encoders(engine: IllustrateEngine) -> None:
    from webapp.story.picture_prompt import picture_prompt
    from webapp.story.styles import STYLES

    characters = [
        ("Milo", "Milo is a small red fox with a green scarf and a bushy tail"),
        ("Ada", "a little girl with curly brown hair, a yellow dress and red boots"),
    ]
    for style in STYLES:
        picture = picture_prompt("Milo and Ada share a picnic under a big oak tree at sunset, two birds sing in the branches", characters, style.id)
        assert engine.prompt_window.overflows(picture.prompt, picture.negative_prompt) == [], style.id


def test_tiny_tokenizer_reads_common_words_as_one_token_like_clip(engine: IllustrateEngine) -> None:
    from services.illustrate.tiny import CONTRACTIONS, VOCABULARY_WORDS, _vocabulary_and_merges

    tokenizer = engine.base.tokenizer
    assert [word for word in [*VOCABULARY_WORDS, *CONTRACTIONS] if len(tokenizer.tokenize(word)) != 1] == []
    # Counts CLIP ViT-L/14's tokenizer gives: 22 and 15; an unknown word falls into letter pairs, not bytes (CLIP: 3).
    assert len(tokenizer.tokenize("a little girl with curly red hair climbs a rope ladder into a treehouse, her grey cat watching from a branch")) == 22
    assert len(tokenizer.tokenize("soft watercolor children's book illustration, gentle washes, paper texture, warm light")) == 15
    assert len(tokenizer.tokenize("xylophone")) <= 5
    vocabulary, merges = _vocabulary_and_merges()
    assert tokenizer.get_vocab() == vocabulary
    for merge in merges:
        left, right = merge.split(" ")
        assert left in vocabulary and right in vocabulary and left + right in vocabulary, merge
    for encoder in (engine.base.text_encoder, engine.base.text_encoder_2):
        assert encoder.config.vocab_size == len(tokenizer) == len(vocabulary)


def test_an_older_tiny_build_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.illustrate import tiny

    old = tmp_path / "illustrate"
    (old / "refiner").mkdir(parents=True)
    (old / "refiner" / "model_index.json").write_text("{}")  # the marker of the first build, without the vocabulary
    monkeypatch.setattr(tiny, "_write_tiny_sdxl", lambda folder: (folder / tiny._MARKER).write_text("{}"))
    assert tiny.build_tiny_sdxl(old) == old
    assert (old / tiny._MARKER).is_file() and not (old / "refiner").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["illustrate"]


def test_a_word_cut_in_two_by_the_window_counts_as_not_used(engine: IllustrateEngine) -> None:
    text = "a " * 74 + "xylophone fox"  # 74 one-token words, then a word of several tokens across the 75th
    overflow = engine.prompt_window.overflow("prompt", text)
    assert overflow is not None and overflow.window == 77 and overflow.tokens > 77
    assert overflow.unused_text == "xylophone fox"
    assert overflow.message.endswith("so the words after 'a a a a a' were not used.")
    assert engine.prompt_window.overflow("prompt", "a " * 75) is None  # exactly the window: all of it is read

"""The benchmarks run for real at small sizes: the latency stand-ins honour the services' wire, the book benchmark
reports every stage of both orders, and the GPU harness's tiny mode produces numbers on the CPU."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import openai
import pytest
import torch

from bench.book import run_latency
from bench.book_projections import streamed_pictures_seconds
from bench.book_report import render_markdown, render_text
from bench.common import batch_counters, percentile
from bench.latency_services import CallLog, LatencyProfile, LatencyServices, create_llm_app, peak_in_flight
from bench.schema_instance import schema_instance
from shared.clients import CaptionClient, IllustrateClient, RetryPolicy
from shared.images import from_b64_png
from shared.schemas import ImageGenerationRequest
from shared.server_thread import ServerThread
from shared.settings import Settings
from webapp.story.options import StoryOptions
from webapp.story.plan import LengthBudget, page_text_model, plan_model, translation_model

# Short injected latencies and a wide batching window, so requests sent together always share a call.
FAST = LatencyProfile(caption_seconds=0.02, llm_seconds_per_token=0.0002, image_seconds_per_call=0.05, image_batch_size=4,
                      batch_window_ms=150, image_pixels=48, string_chars=60)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("stand-ins")
    services = LatencyServices(Settings(data_dir=folder / "data", cache_dir=folder / "cache", api_key=None), FAST)
    settings = services.start()
    yield services, settings
    services.stop()


@pytest.fixture
def one_cpu_thread():
    """The tiny harness on one torch thread (the machine is shared); restored afterwards for the other tests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_schema_instance_respects_counts_lengths_and_references() -> None:
    schema = plan_model(3, LengthBudget.compact()).model_json_schema()
    instance = schema_instance(schema, string_chars=500)
    plan = plan_model(3, LengthBudget.compact()).model_validate(instance)
    assert len(plan.pages) == 3 and len(plan.characters) == 1  # type: ignore[attr-defined]
    assert len(plan.title) == LengthBudget.compact().title  # type: ignore[attr-defined]
    short = schema_instance({"type": "object", "properties": {"tag": {"type": "string", "minLength": 5}, "kind": {"enum": ["a", "b"]},
                                                               "count": {"type": "integer", "exclusiveMinimum": 2}}}, string_chars=1)
    assert short == {"tag": short["tag"], "kind": "a", "count": 3} and len(short["tag"]) == 5


async def test_latency_llm_gives_the_openai_client_valid_json_for_the_requested_schema(stand_ins) -> None:
    services, settings = stand_ins
    client = openai.AsyncOpenAI(base_url=settings.resolved_llm_base_url, api_key="unused")
    schema_model = translation_model(4, LengthBudget())
    try:
        completion = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Translate."}],
            response_format={"type": "json_schema", "json_schema": {"name": "translation", "schema": schema_model.model_json_schema(), "strict": True}},
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "x"}],
                response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"$ref": "https://example.com/s.json"}}},
            )
    finally:
        await client.close()
    content = completion.choices[0].message.content or ""
    translation = schema_model.model_validate_json(content)
    assert len(translation.pages) == 4  # type: ignore[attr-defined]
    assert completion.usage is not None and completion.usage.completion_tokens == math.ceil(len(content) / 4)
    assert refused.value.body["param"] == "response_format"  # type: ignore[index]
    logged = [call for call in services.log.calls if call.name == "translation"]
    assert logged and logged[-1].injected_seconds == pytest.approx(FAST.llm_seconds(completion.usage.completion_tokens))


async def test_latency_illustrate_returns_pngs_and_batches_requests_sent_together(stand_ins) -> None:
    _, settings = stand_ins
    client = IllustrateClient(settings.illustrate_url, retry=RetryPolicy(attempts=1))
    before = batch_counters(httpx.get(settings.illustrate_url + "/metrics").text, "illustrate")
    try:
        responses = await asyncio.gather(*(
            client.generate(ImageGenerationRequest(prompt=f"page {page}", size="128x64", n=1 if page else 2, seed=page)) for page in range(3)
        ))
    finally:
        await client.aclose()
    after = batch_counters(httpx.get(settings.illustrate_url + "/metrics").text, "illustrate")
    images = [from_b64_png(item.b64_json) for response in responses for item in response.data]
    assert len(images) == 4 and all(image.size == (48, 24) for image in images)
    assert after[1] - before[1] == 3 and after[0] - before[0] == 1  # three requests, four images, one call of up to four


async def test_latency_caption_checks_the_photo_like_the_real_service(stand_ins, photo_bytes: bytes) -> None:
    _, settings = stand_ins
    client = CaptionClient(settings.caption_url, retry=RetryPolicy(attempts=1))
    try:
        response = await client.caption(photo_bytes)
        async with httpx.AsyncClient() as http:
            refused = await http.post(settings.caption_url + "/v1/caption", files={"image": ("photo.jpg", b"not a photo")})
    finally:
        await client.aclose()
    assert response.caption == FAST.caption_text and response.new_tokens > 0
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "image"


def test_book_benchmark_reports_every_stage_of_both_orders_and_the_critical_path(photo_bytes: bytes) -> None:
    report = run_latency(FAST, StoryOptions(pages=2, language="fr", seed=3), photo_bytes)
    assert set(report.sequential.stages) == {"caption", "story", "title", "scenes", "translate", "illustrate", "book"}
    assert set(report.fabula.stages) == {"caption", "plan", "write", "illustrate", "book"}
    assert report.llm_calls == {"story_outline": 1, "page_text": 2, "translation": 3}  # a translation per page and the title
    critical = report.critical_path
    assert critical is not None and critical.outline > 0 and critical.page_text > 0 and critical.translation > 0
    assert critical.write == pytest.approx(critical.page_text + critical.translation)
    assert critical.outline_tokens > critical.page_text_tokens > 0
    assert critical.illustrate == FAST.image_seconds(3)
    assert critical.total == pytest.approx(critical.caption + critical.outline + max(critical.write, critical.illustrate) + critical.book)
    assert report.image_requests == 3 and report.image_calls >= 1
    assert report.fabula.first_page_seconds and report.sequential.first_page_seconds
    assert report.ratio_to_critical_path and report.speedup and len(report.targets) == 2
    assert report.findings and len(report.projections) == 4  # FAST batches up to 4 pictures: the book's 3 fit one call
    assert "critical path" in render_text(report) and "| stage |" in render_markdown(report)


async def test_latency_llm_decodes_concurrent_requests_side_by_side(tmp_path: Path) -> None:
    """Like a continuous-batching server (vLLM), the stand-in LLM serves every request at once, not in turn."""
    profile = FAST.model_copy(update={"llm_prefill_seconds": 1.0})
    log = CallLog()
    server = ServerThread(create_llm_app(profile, Settings(data_dir=tmp_path, api_key=None), log)).start()
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
    schema = {"name": "page_text", "schema": page_text_model(LengthBudget.compact()).model_json_schema(), "strict": True}
    try:
        await asyncio.gather(*(
            client.chat.completions.create(model="any", messages=[{"role": "user", "content": f"page {page}"}],
                                           response_format={"type": "json_schema", "json_schema": schema})
            for page in range(6)
        ))
    finally:
        await client.close()
        server.stop()
    assert [call.name for call in log.calls] == ["page_text"] * 6
    assert peak_in_flight(log.calls, "llm") == 6


def test_streamed_outline_projection_replays_the_stand_in_batching() -> None:
    profile = LatencyProfile(llm_seconds_per_token=0.0, image_seconds_per_call=2.0, image_batch_size=4, batch_window_ms=0)
    outline = {"title": "T", "cover_prompt": "cover", "characters": [{"name": "A", "description": "a"}],
               "pages": [{"beat": "b", "scene_prompt": f"scene {page}"} for page in range(7)]}
    seconds, last_picture = streamed_pictures_seconds(outline, profile)
    assert seconds == 0.0 and last_picture == profile.image_seconds(8)  # all arrive at once: two full calls
    slow_text = profile.model_copy(update={"llm_seconds_per_token": 0.5, "image_seconds_per_call": 0.1})
    seconds, last_picture = streamed_pictures_seconds(outline, slow_text)
    text = json.dumps(outline)
    last_prompt_ready = seconds * (text.index('"scene 6"') + len('"scene 6"')) / len(text)
    assert last_picture == pytest.approx(last_prompt_ready + 0.1)  # each picture painted while the outline is still being written


def test_gpu_sdxl_harness_tiny_mode_times_both_recipes(tiny_settings: Settings, one_cpu_thread: None) -> None:
    from bench.gpu_sdxl import render, run_harness
    from services.illustrate.tiny import build_tiny_sdxl
    from shared.profiles import tiny_dir

    folder = build_tiny_sdxl(tiny_dir("illustrate", tiny_settings))
    report = run_harness(folder, tiny=True, device="cpu", dtype_name="fp32", size=64, steps=4, refiner_start=0.5,
                         batches=[1, 2], repeats=1)
    assert [(timing.recipe.split()[0], timing.batch) for timing in report.timings] == [("stock", 1), ("Fabula", 1), ("stock", 2), ("Fabula", 2)]
    assert all(timing.seconds_per_image > 0 and timing.ratio_to_floor > 0 for timing in report.timings)
    assert all(timing.ratio_to_stock for timing in report.timings if timing.recipe.startswith("Fabula"))
    assert report.base_steps + report.refiner_steps == 4 and report.refiner_steps > 0
    assert report.stock_tflop_per_image > report.fabula_tflop_per_image > 0 and report.matmul_tflops > 0
    assert "× FLOP floor" in render(report, markdown=False)


def test_gpu_llava_harness_tiny_mode_times_captions(one_cpu_thread: None) -> None:
    from bench.gpu_llava import run_harness

    report = run_harness(tiny=True, device="cpu", dtype_name="fp32", new_tokens=6, batches=[1, 2], repeats=1)
    assert report.image_tokens == 16
    assert [timing.batch for timing in report.timings] == [1, 2]
    assert all(timing.seconds > 0 and timing.tokens_per_second > 0 for timing in report.timings)


def test_percentile_interpolates_between_samples() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.95) == 5.0

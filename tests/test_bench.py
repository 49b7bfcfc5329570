"""The benchmarks run for real at small sizes: the latency stand-ins honour the services' wire (the LLM's plain text
passes the writer's own rules, whole or streamed), the book benchmark reports both orders and Fabula's timeline, and
the GPU harness's tiny mode produces numbers on the CPU."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch

from bench.book import run_latency
from bench.book_report import render_markdown, render_text
from bench.common import batch_counters, percentile
from bench.latency_services import CallLog, LatencyProfile, LatencyServices, create_llm_app, peak_in_flight
from bench.schema_instance import filler_text, schema_instance
from shared.clients import CaptionClient, IllustrateClient, RetryPolicy
from shared.images import from_b64_png
from shared.schemas import ImageGenerationRequest
from shared.server_thread import ServerThread
from shared.settings import Settings
from webapp.jobs.pipeline import COVER
from webapp.story import prompts
from webapp.story.options import StoryOptions
from webapp.story.plan import LengthBudget, page_text_model, plan_model, translation_model
from webapp.story.writer import StoryWriter

# Short injected latencies and a wide batching window, so requests sent together always share a call.
FAST = LatencyProfile(caption_seconds=0.02, llm_seconds_per_token=0.0002, image_seconds_per_call=0.05, image_batch_size=4,
                      batch_window_ms=150, image_pixels=48)


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
    assert all(len(filler_text(length, offset)) == length for length in range(80) for offset in range(5))
    assert filler_text(60).endswith(".") and not filler_text(60).startswith(" ")


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


async def test_latency_llm_plain_text_passes_the_writers_rules_without_fallbacks(stand_ins) -> None:
    """The writer's own outline (streamed), page and translation calls against the stand-in: nothing is regenerated."""
    services, settings = stand_ins
    client = openai.AsyncOpenAI(base_url=settings.resolved_llm_base_url, api_key="unused")
    writer = StoryWriter(client, model="any", budget=LengthBudget())
    options = StoryOptions(pages=4, language="fr", idea="A lost kite on a windy day", character_names=["Mia", "Leo"])
    beats_seen: list[int] = []

    async def on_beat(draft, page: int) -> None:
        beats_seen.append(page)

    started = time.perf_counter()
    try:
        outline = await writer.outline("A girl and her dog in the rain.", options, seed=5, on_beat=on_beat)
        brief = writer.brief("A girl and her dog in the rain.", options, tuple(outline.names))
        beats = {page: item.beat for page, item in enumerate(outline.pages, start=1)}
        page = await writer.write_page(brief, outline.title, beats, 1, 4, seed=5)
        translated = await writer.translate(page.text, "ko", outline.names)
        title = await writer.translate(outline.title, "fr", outline.names, what="title")
    finally:
        await client.close()
    assert outline.fallbacks == [] and beats_seen == [1, 2, 3, 4]
    assert outline.names == ["Mia", "Leo"] and all(character.description for character in outline.characters)
    assert not page.fallback and "Mia" in page.text and "kite" in page.text
    assert not translated.fallback and "Mia" in translated.text and translated.text != page.text
    assert not title.fallback
    calls = [call for call in services.log.since(started) if call.service == "llm"]
    assert [call.name for call in calls] == ["outline", "page", "translation", "translation"]  # one call each: no retries
    assert calls[1].subject == beats[1] and calls[2].subject == page.text


async def test_latency_llm_streams_chunks_at_the_token_pace_and_ends_with_done(tmp_path: Path) -> None:
    profile = FAST.model_copy(update={"llm_seconds_per_token": 0.005})
    log = CallLog()
    server = ServerThread(create_llm_app(profile, Settings(data_dir=tmp_path, api_key=None), log)).start()
    brief = prompts.Brief(options=StoryOptions(pages=6), names=("Ruby",), photo=None, idea=None)
    request = {"model": "any", "messages": prompts.outline_messages(brief, 6), "seed": 3, "top_p": 0.9,
               "frequency_penalty": 0.4, "presence_penalty": 0.2}
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            whole = (await http.post("/v1/chat/completions", json=request)).json()["choices"][0]["message"]["content"]
            arrivals: list[tuple[float, dict | str]] = []
            began = time.perf_counter()
            async with http.stream("POST", "/v1/chat/completions", json=request | {"stream": True}) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        payload = line.removeprefix("data: ")
                        arrivals.append((time.perf_counter() - began, payload if payload == "[DONE]" else json.loads(payload)))
    finally:
        server.stop()
    chunks = [payload for _, payload in arrivals if isinstance(payload, dict)]
    assert arrivals[-1][1] == "[DONE]" and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == whole
    lines = whole.split("\n")
    assert lines[0].startswith("Title: ") and lines[1].startswith("Characters: Ruby (")
    assert [line.split(".")[0] for line in lines[2:]] == [str(page) for page in range(1, 7)]  # one numbered line per page
    streamed, plain = log.calls[1], log.calls[0]
    assert [call.name for call in log.calls] == ["outline", "outline"] and streamed.tokens == plain.tokens == math.ceil(len(whole) / 4)
    assert len(streamed.marks) == len(lines) and streamed.subject == whole
    total = arrivals[-1][0]
    first_line = next(moment for moment, payload in arrivals if isinstance(payload, dict) and "\n" in payload["choices"][0]["delta"].get("content", ""))
    assert total >= profile.llm_seconds(streamed.tokens) * 0.9 and first_line < total / 3  # same total time; the title line arrives early


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


def test_book_benchmark_reports_both_orders_the_goals_and_fabulas_timeline(photo_bytes: bytes) -> None:
    report = run_latency(FAST, StoryOptions(pages=2, language="fr", seed=3), photo_bytes)
    assert set(report.sequential.stages) == {"caption", "story", "title", "scenes", "translate", "illustrate", "book"}
    assert set(report.fabula.stages) == {"caption", "plan", "write", "illustrate", "book"}
    assert report.llm_calls == {"outline": 1, "page": 2, "translation": 3}  # a translation per page and the title, none retried
    assert report.sequential_llm_calls == {"story": 1, "title": 1, "scenes": 1, "translation": 3}
    assert report.image_requests == 3 and report.image_calls >= 1 and report.mean_batch == report.image_requests / report.image_calls
    timeline = report.timeline
    assert timeline is not None and timeline.caption and timeline.outline and timeline.title_translation
    pages = {page.page: page for page in timeline.pages}
    assert set(pages) == {1, 2, COVER} and pages[COVER].picture is not None
    for number in (1, 2):
        page = pages[number]
        assert page.beat and page.picture and page.text and page.translation and page.finished
        assert page.beat <= page.picture.start <= page.picture.end <= page.finished + 0.01
        assert page.text.end <= page.translation.start + 0.01 and page.translation.end <= page.finished + 0.01
    # Page 1 is the photo's own scene: it starts when the caption is back, beside the plan; page 2 waits for its beat.
    assert pages[1].beat == pytest.approx(timeline.caption.end) and pages[1].text.start < timeline.outline.end
    assert timeline.outline.start < pages[2].beat
    assert report.fabula.first_page_seconds == pytest.approx(min(pages[1].finished, pages[2].finished))
    assert report.first_page_share == pytest.approx(report.fabula.first_page_seconds / report.fabula.total_seconds)
    assert [target.name.split()[0] for target in report.targets] == ["speed-up", "first"] and report.speedup
    assert any(finding.startswith("Page ") and "first finished" in finding for finding in report.findings)
    text, markdown = render_text(report), render_markdown(report)
    assert "Fabula's timeline" in text and "first page / total" in text and "| stage |" in markdown and "| page |" in markdown


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

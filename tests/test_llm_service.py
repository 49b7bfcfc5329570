"""The LLM service on the tiny random chat model, over real HTTP on loopback, through the `openai` client."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from services.llm.app import create_app
from services.llm.tiny import build_tiny_chat_model
from shared.profiles import tiny_dir
from shared.server_thread import ServerThread
from shared.settings import Settings

MESSAGES = [
    {"role": "system", "content": "You write children's stories."},
    {"role": "user", "content": "A photo shows a cat on a red blanket. Plan a story."},
]

PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "characters": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 40},
                    "description": {"type": "string", "maxLength": 200},
                },
                "required": ["name", "description"],
                "additionalProperties": False,
            },
        },
        "pages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 24,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": 400},
                    "scene_prompt": {"type": "string", "maxLength": 300},
                },
                "required": ["text", "scene_prompt"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "characters", "pages"],
    "additionalProperties": False,
}


class Character(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=40)
    description: str = Field(max_length=200)


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=400)
    scene_prompt: str = Field(max_length=300)


class StoryPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=80)
    characters: list[Character] = Field(min_length=1, max_length=4)
    pages: list[Page] = Field(min_length=1, max_length=24)


def _serve(settings: Settings) -> ServerThread:
    app = create_app(settings)
    server = ServerThread(app).start()
    assert app.state.holder.wait(timeout=120), app.state.holder.error
    return server


@pytest.fixture(scope="session")
def llm_url(tiny_settings: Settings) -> Iterator[str]:
    server = _serve(tiny_settings)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def client(llm_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm_url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_tiny_model_is_built_once_and_its_tokenizer_encodes_any_script(llm_url: str, tiny_settings: Settings) -> None:
    from transformers import AutoTokenizer

    folder = tiny_dir("llm", tiny_settings)
    weights = folder / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    assert build_tiny_chat_model(folder) == folder
    assert weights.stat().st_mtime_ns == built_at
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in ("Hello 😀🐱", "안녕하세요, 고양이", "مرحبا بالعالم", "Ünïcödé — ünd ß"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<s><|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_plain_completion_returns_text_and_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="whatever-the-client-says", messages=MESSAGES, max_tokens=16, seed=1)
    assert completion.object == "chat.completion"
    assert completion.model == "tiny"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 10 and 1 <= usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_same_seed_gives_same_text_and_text_parts_are_accepted(client: openai.OpenAI) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "A photo of a cat."}, {"type": "text", "text": "Plan a story."}]}]
    first = client.chat.completions.create(model="tiny", messages=parts, max_tokens=12, seed=7, temperature=0.8, top_p=0.9)
    second = client.chat.completions.create(model="tiny", messages=parts, max_tokens=12, seed=7, temperature=0.8, top_p=0.9)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_stop_sequence_cuts_the_answer_before_it(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, seed=11, temperature=0)
    text = full.choices[0].message.content
    stop = text[6:9]
    cut = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, seed=11, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_streaming_chunks_concatenate_to_the_completion(client: openai.OpenAI) -> None:
    request = {"model": "tiny", "messages": MESSAGES, "max_tokens": 30, "seed": 5}
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "tiny" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stream_ends_with_done_on_the_wire(llm_url: str) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, "seed": 2, "stream": True}
    with httpx.stream("POST", llm_url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] in ("stop", "length")


def test_models_lists_the_loaded_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_json_schema_answer_parses_and_validates(client: openai.OpenAI, seed: int) -> None:
    completion = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=400,
        seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "story_plan", "schema": PLAN_SCHEMA, "strict": True}},
    )
    content = completion.choices[0].message.content
    plan = StoryPlan.model_validate(json.loads(content))
    assert plan.pages and plan.characters
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens <= 400


def test_compiled_grammars_are_cached_per_schema(llm_url: str, client: openai.OpenAI) -> None:
    def compiled() -> int:
        return httpx.get(llm_url + "/readyz", timeout=10).json()["extra"]["grammars_compiled"]

    schema = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 12}}, "required": ["word"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "word", "schema": schema}}
    before = compiled()
    for seed in (1, 2, 3):
        completion = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=30, seed=seed, response_format=response_format)
        answer = json.loads(completion.choices[0].message.content)
        assert set(answer) == {"word"} and len(answer["word"]) <= 12
    assert compiled() == before + 1


def test_json_schema_closes_within_a_tight_budget(client: openai.OpenAI) -> None:
    """A budget just above the schema's shortest answer: the decoder must close every string and array itself."""
    for seed in (4, 5):
        completion = client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=120,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "story_plan", "schema": PLAN_SCHEMA}},
        )
        StoryPlan.model_validate_json(completion.choices[0].message.content)
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage.completion_tokens <= 120


def test_json_schema_stream_is_valid_json_too(client: openai.OpenAI) -> None:
    chunks = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=200,
        seed=9,
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "story_plan", "schema": PLAN_SCHEMA}},
    )
    StoryPlan.model_validate_json("".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices))


def test_json_schema_with_enums_ranges_patterns_and_formats(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "mood": {"enum": ["happy", "sad", "curious"]},
            "age": {"type": "integer", "minimum": 3, "maximum": 12},
            "code": {"type": "string", "pattern": "^[a-z]+[0-9]$"},
            "day": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
            "note": {"type": ["string", "null"], "maxLength": 20},
        },
        "required": ["mood", "age", "code", "day", "tags", "note"],
    }
    for seed in (0, 1, 2):
        completion = client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=90,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "mixed", "schema": schema}},
        )
        answer = json.loads(completion.choices[0].message.content)
        assert answer["mood"] in ("happy", "sad", "curious") and 3 <= answer["age"] <= 12
        assert re.fullmatch(r"[a-z]+[0-9]", answer["code"])
        assert re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", answer["day"])  # the format's shape
        assert len(answer["tags"]) <= 3 and all(len(tag) <= 10 for tag in answer["tags"])
        assert answer["note"] is None or len(answer["note"]) <= 20


def test_schema_strings_refuse_raw_control_bytes_and_encoded_surrogates(tiny_settings: Settings) -> None:
    """`json.loads` rejects a raw control character, and an encoded surrogate decodes to U+FFFD and breaks
    `maxLength`: no string rule may let either through (the service relies on the grammar library for this)."""
    from transformers import AutoTokenizer

    from services.llm.constrained import GrammarLibrary

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_chat_model(tiny_dir("llm", tiny_settings)))
    library = GrammarLibrary(tokenizer, vocab_size=len(tokenizer), stop_token_ids=[tokenizer.eos_token_id])
    assert all(library.vocabulary.spell(bytes([byte])) for byte in [*range(0x20), 0xED, 0xA0, 0x80])  # each byte has a token
    for rule in ({"type": "string"}, {"type": "string", "maxLength": 5}, {"type": "string", "pattern": "^.*$"}):
        matcher = library.compile({"type": "object", "properties": {"a": rule}, "required": ["a"]}).fork()
        assert matcher.accept_bytes(b'{"a":"')
        assert not any(matcher.allows(bytes([byte])) for byte in range(0x20)), rule
        assert not matcher.allows("\ud800".encode("utf-8", "surrogatepass")), rule
        assert matcher.allows("\ud7ff".encode()) and matcher.completes(b'\\u0001"}'), rule


def test_json_object_gives_parseable_json(client: openai.OpenAI) -> None:
    for seed in (0, 1):
        completion = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=40, seed=seed, response_format={"type": "json_object"}
        )
        assert isinstance(json.loads(completion.choices[0].message.content), dict)


BAD_REQUESTS = [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "x" * 100_001}]}, "messages"),
    ({"max_tokens": 1_000_000}, "max_tokens"),
    ({"max_completion_tokens": 9000}, "max_completion_tokens"),
    ({"n": 2}, "n"),
    ({"temperature": 5}, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"max_tokens": 20, "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": PLAN_SCHEMA}}}, "max_tokens"),
]


@pytest.mark.parametrize(("change", "param"), BAD_REQUESTS, ids=[param + "-" + str(index) for index, (_, param) in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_400_naming_the_field(llm_url: str, change: dict, param: str) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 4, **change}
    response = httpx.post(llm_url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert param.split(".")[-1] in error["message"]


def test_malformed_json_body_gets_400(llm_url: str) -> None:
    response = httpx.post(
        llm_url + "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_openai_client_sees_bad_request_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, n=3)
    assert "`n`" in caught.value.message


def test_abandoned_stream_is_cancelled_and_the_service_keeps_answering(
    llm_url: str, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.llm.engine")  # each completion is logged at DEBUG
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8000, "seed": 1, "stream": True}
    with httpx.stream("POST", llm_url + "/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content"):
                break

    deadline = time.monotonic() + 60
    finished: list[dict] = []
    while not finished and time.monotonic() < deadline:
        finished = [record.fields for record in caplog.records if getattr(record, "fields", {}).get("finish_reason") == "cancelled"]
        time.sleep(0.05)
    assert finished and finished[0]["completion_tokens"] < 8000

    after = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, seed=1)
    assert after.choices[0].message.content
    assert httpx.get(llm_url + "/readyz", timeout=10).json()["status"] == "ready"


def test_metrics_count_pipeline_calls(llm_url: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    text = httpx.get(llm_url + "/metrics", timeout=10).text
    calls = [line for line in text.splitlines() if line.startswith('fabula_pipeline_calls_total{service="llm"}')]
    assert calls and float(calls[0].split()[-1]) >= 1


def test_missing_weights_fail_fast(tmp_path: Path) -> None:
    from services.llm.app import resolve_llm_model
    from shared.errors import ModelUnavailable

    settings = Settings(profile="cpu", cache_dir=tmp_path, data_dir=tmp_path, llm_model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelUnavailable) as caught:
        resolve_llm_model(settings)
    assert caught.value.param == "FABULA_LLM_MODEL"


def test_concurrent_requests_are_decoded_together_and_answer_as_they_would_alone(llm_url: str, client: openai.OpenAI) -> None:
    import asyncio

    from tests.conftest import metric_value

    def ask(seed: int) -> dict:
        return {"model": "tiny", "messages": MESSAGES, "max_tokens": 12, "seed": seed, "temperature": 0.8}

    alone = [client.chat.completions.create(**ask(seed)).choices[0].message.content for seed in range(4)]
    before = httpx.get(llm_url + "/metrics", timeout=10).text

    async def together() -> list[str]:
        async with openai.AsyncOpenAI(base_url=llm_url + "/v1", api_key="x", max_retries=0, timeout=120) as batch_client:
            replies = await asyncio.gather(*(batch_client.chat.completions.create(**ask(seed)) for seed in range(4)))
        return [reply.choices[0].message.content for reply in replies]

    assert asyncio.run(together()) == alone
    after = httpx.get(llm_url + "/metrics", timeout=10).text
    passes = metric_value(after, "fabula_batch_size_count") - metric_value(before, "fabula_batch_size_count")
    sequences = metric_value(after, "fabula_batch_size_sum") - metric_value(before, "fabula_batch_size_sum")
    assert sequences / passes > 1.5, (passes, sequences)

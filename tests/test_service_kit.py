"""The service kit: one contract every model service keeps, the frame that owns each service's batcher, and the
shared batcher, body reader and dtype policy.

The contract runs against each service on its tiny model over real HTTP, with an API key set: health,
readiness and metrics stay open, the model route needs the key, the request id is echoed, and every error
(404, 405, 413, a 5,000-level JSON body) has the `{"error": {"type", "message", "param"}}` shape.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import torch
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr
from starlette.requests import Request

from services.caption.app import create_app as create_caption_app
from services.illustrate.app import create_app as create_illustrate_app
from services.llm.app import create_app as create_llm_app
from services.registry import SERVICE_NAMES, SERVICES
from shared.batching import BatchSpec, MicroBatcher
from shared.bodies import BodyLimit, BodyLimitMiddleware, json_depth_exceeds, parse_json, read_body
from shared.dtypes import choose_dtype, parse_dtype
from shared.errors import ClientDisconnected, DeadlineExceeded, InvalidRequest, InvalidSetting, ModelNotReady, PayloadTooLarge
from shared.metrics import ServiceMetrics
from shared.model_holder import EngineInfo
from shared.server_thread import ServerThread
from shared.service_app import ServiceSpec
from shared.settings import SERVICE_PORTS, Settings
from tests.conftest import metric_value

API_KEY = "kit-key"
DEEP_JSON = b"[" * 5000 + b"]" * 5000


@dataclass(frozen=True)
class ServiceCase:
    name: str
    create_app: Callable[..., FastAPI]
    route: str
    limits: dict[str, int]
    content_type: str = "application/json"

    def oversized(self, size: int) -> bytes:
        """A well-formed body of at least `size` bytes, so only its size is wrong."""
        if self.content_type.startswith("multipart/"):
            head = b'--kit\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            return head + b"\xff" * size + b"\r\n--kit--\r\n"
        return b'{"prompt": "' + b"x" * size + b'"}'


CASES = [
    ServiceCase("caption", create_caption_app, "/v1/caption", {"max_upload_bytes": 8_000}, "multipart/form-data; boundary=kit"),
    ServiceCase("illustrate", create_illustrate_app, "/v1/images/generations", {"max_prompt_chars": 200, "max_upload_bytes": 8_000}),
    ServiceCase("llm", create_llm_app, "/v1/chat/completions", {"max_chat_messages_chars": 2_000}),
]


@dataclass
class RunningService:
    case: ServiceCase
    app: FastAPI
    url: str

    def post(self, content: bytes | Iterator[bytes], *, key: str | None = API_KEY, content_type: str = "application/json",
             **headers: str) -> httpx.Response:
        sent = {"content-type": content_type, **headers}
        if key:
            sent["authorization"] = f"Bearer {key}"
        return httpx.post(self.url + self.case.route, content=content, headers=sent, timeout=60)


@pytest.fixture(scope="module", params=CASES, ids=[case.name for case in CASES])
def service(request: pytest.FixtureRequest, tiny_settings: Settings) -> Iterator[RunningService]:
    case: ServiceCase = request.param
    settings = tiny_settings.model_copy(update={"api_key": SecretStr(API_KEY), **case.limits})
    app = case.create_app(settings, device="cpu")
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=300), app.state.holder.error
        yield RunningService(case, app, server.url)


def assert_error_shape(response: httpx.Response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["message"]
    if error_type:
        assert body["error"]["type"] == error_type
    return body["error"]


def test_health_readiness_and_metrics_stay_open_with_a_key(service: RunningService) -> None:
    health = httpx.get(service.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": service.case.name}
    ready = httpx.get(service.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["service"] == service.case.name
    assert (ready["model"], ready["device"], ready["dtype"]) == ("tiny", "cpu", "float32")
    metrics = httpx.get(service.url + "/metrics").text
    assert "fabula_queue_wait_seconds" in metrics and "fabula_request_seconds" in metrics


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {API_KEY}"], ids=["no-key", "wrong-key", "wrong-scheme"])
def test_model_route_needs_the_key(service: RunningService, header: str | None) -> None:
    headers = {"authorization": header} if header else {}
    response = httpx.post(service.url + service.case.route, json={}, headers=headers, timeout=30)
    error = assert_error_shape(response, 401, "authentication_error")
    assert error["param"] == "Authorization"
    assert response.headers["www-authenticate"] == "Bearer"


def test_request_id_is_echoed_or_made_up(service: RunningService) -> None:
    echoed = httpx.get(service.url + "/healthz", headers={"X-Request-ID": "book-42.page-3"})
    assert echoed.headers["x-request-id"] == "book-42.page-3"
    assert re.fullmatch(r"[0-9a-f]{32}", httpx.get(service.url + "/healthz").headers["x-request-id"])
    refused = service.post(b"{}", key=None, **{"X-Request-ID": "refused-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "refused-1"


def test_unknown_path_and_wrong_method_answer_in_the_error_shape(service: RunningService) -> None:
    assert_error_shape(httpx.get(service.url + "/v1/nothing-here"), 404, "not_found")
    assert_error_shape(httpx.delete(service.url + "/healthz"), 405, "method_not_allowed")


def test_oversized_body_is_a_413_declared_or_chunked(service: RunningService) -> None:
    limit = service.app.state.body_limit
    body = service.case.oversized(limit.max_bytes + 1)
    content_type = service.case.content_type
    declared = service.post(body, content_type=content_type)
    chunked = service.post((body[start:start + 65_536] for start in range(0, len(body), 65_536)), content_type=content_type)
    for response in (declared, chunked):
        error = assert_error_shape(response, 413, "payload_too_large")
        assert error["param"] == limit.param
        assert response.headers["x-request-id"]


def test_deeply_nested_json_is_a_400(service: RunningService) -> None:
    assert_error_shape(service.post(DEEP_JSON), 400, "invalid_request_error")
    assert httpx.get(service.url + "/healthz").status_code == 200


def test_a_bad_deadline_header_is_a_400_naming_it(service: RunningService) -> None:
    error = assert_error_shape(service.post(b"{}", **{"X-Request-Timeout": "soon"}), 400, "invalid_request_error")
    assert error["param"] == "X-Request-Timeout"


# --- the micro-batcher ----------------------------------------------------------------------------------------------

class GatedModel:
    """A model call that records what it was given and holds the worker until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(items)
        self.entered.set()
        assert self.release.wait(timeout=60)
        return [item.upper() for item in items]


async def _wait_for(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics("kit")


async def test_batcher_groups_by_key_and_caps_the_batch_weight(metrics: ServiceMetrics) -> None:
    calls: list[list[str]] = []

    def model(items: list[str]) -> list[str]:
        calls.append(items)
        return [item * 2 for item in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(model, name="kit", metrics=metrics, window_seconds=0.05, max_batch_weight=3)
    batcher.start()
    try:
        submitted = [("a", "square", 1), ("b", "wide", 1), ("c", "square", 2), ("d", "square", 1)]
        results = await asyncio.gather(*(batcher.submit(item, key=key, weight=weight) for item, key, weight in submitted))
    finally:
        await batcher.stop()
    assert [result.result for result in results] == ["aa", "bb", "cc", "dd"]
    assert sorted(calls) == [["a", "c"], ["b"], ["d"]]
    assert metric_value(metrics.render().decode(), "fabula_batch_size_sum") == 4


async def test_batcher_drops_a_request_whose_client_left_before_its_call(metrics: ServiceMetrics) -> None:
    model = GatedModel()
    batcher: MicroBatcher[str, str] = MicroBatcher(model, name="kit", metrics=metrics, window_seconds=0, max_batch_weight=4)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit("first", key=1))
        await _wait_for(model.entered.is_set)
        leaving = asyncio.create_task(batcher.submit("leaving", key=2))
        staying = asyncio.create_task(batcher.submit("staying", key=2))
        await _wait_for(lambda: batcher.queued == 2)
        leaving.cancel()
        model.release.set()
        assert (await first).result == "FIRST" and (await staying).result == "STAYING"
        with pytest.raises(asyncio.CancelledError):
            await leaving
    finally:
        await batcher.stop()
    assert model.calls == [["first"], ["staying"]]
    assert metric_value(metrics.render().decode(), "fabula_requests_dropped_total", reason="disconnected") == 1


async def test_batcher_rejects_a_request_past_its_deadline_without_running_it(metrics: ServiceMetrics) -> None:
    model = GatedModel()
    batcher: MicroBatcher[str, str] = MicroBatcher(model, name="kit", metrics=metrics, window_seconds=0, max_batch_weight=4)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit("first"))
        await _wait_for(model.entered.is_set)
        with pytest.raises(DeadlineExceeded) as raised:
            await batcher.submit("late", deadline=time.monotonic() + 0.05)
        assert not first.done()  # answered while the model was still busy with the first call
        assert raised.value.status_code == 504 and "not run" in raised.value.message
        model.release.set()
        await first
        expired = await asyncio.gather(batcher.submit("expired", deadline=0.0), return_exceptions=True)
    finally:
        await batcher.stop()
    assert isinstance(expired[0], DeadlineExceeded)
    assert model.calls == [["first"]]
    assert metric_value(metrics.render().decode(), "fabula_requests_dropped_total", reason="deadline") == 2


async def test_batcher_runs_the_requests_of_a_failed_batch_alone_when_asked(metrics: ServiceMetrics) -> None:
    def model(items: list[str]) -> list[str]:
        if "bad" in items:
            raise InvalidRequest("`prompt` is bad.", param="prompt")
        return items

    batcher: MicroBatcher[str, str] = MicroBatcher(
        model, name="kit", metrics=metrics, window_seconds=0.05, max_batch_weight=4, retry_alone_on=(InvalidRequest,),
    )
    batcher.start()
    try:
        good, bad = await asyncio.gather(batcher.submit("good"), batcher.submit("bad"), return_exceptions=True)
    finally:
        await batcher.stop()
    assert good.result == "good" and isinstance(bad, InvalidRequest)


async def test_batcher_fails_only_the_request_whose_result_is_an_exception(metrics: ServiceMetrics) -> None:
    def model(items: list[str]) -> list[str | BaseException]:
        return [InvalidRequest("`prompt` is bad.", param="prompt") if item == "bad" else item for item in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(model, name="kit", metrics=metrics, window_seconds=0.05, max_batch_weight=4)
    batcher.start()
    try:
        good, bad = await asyncio.gather(batcher.submit("good"), batcher.submit("bad"), return_exceptions=True)
    finally:
        await batcher.stop()
    assert good.result == "good" and good.batch_requests == 2 and isinstance(bad, InvalidRequest)


# --- the frame: one spec per service, the batcher it declares ------------------------------------------------------

class EchoEngine:
    """A model-free engine: upper-cases text, and records the batches it is given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def info(self) -> EngineInfo:
        return EngineInfo(model="echo", device="cpu", dtype="none")


def echo_batch(engine: EchoEngine, items: list[str]) -> list[str]:
    engine.batches.append(items)
    return [item.upper() for item in items]


def echo_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/echo")
    async def echo(request: Request, text: str) -> dict:
        batched = await request.app.state.batcher.submit(text)
        return {"text": batched.result, "batch_requests": batched.batch_requests}

    return router


def echo_spec(**batch: float) -> ServiceSpec:
    return ServiceSpec(
        name="echo", title="Echo", description="A model-free service for the frame's tests.", resolver=lambda _: None,
        load=lambda settings, device, metrics: EchoEngine(), routers=lambda _: [echo_router()],
        batch=BatchSpec(run_batch=echo_batch, **batch),
    )


def test_the_frame_starts_the_declared_batcher_fills_it_from_concurrent_requests_and_stops_it(tiny_settings: Settings) -> None:
    # The batch timeout is long, so only a full batch of three runs: the three requests must share one call.
    app = echo_spec(max_batch_size=3, batch_timeout_s=30.0).create_app(tiny_settings)
    batcher: MicroBatcher[str, str] = app.state.batcher
    with ServerThread(app) as server:
        assert app.state.holder.wait(timeout=30), app.state.holder.error
        with ThreadPoolExecutor(max_workers=3) as pool:
            answers = list(pool.map(lambda text: httpx.post(server.url + "/v1/echo", params={"text": text}, timeout=30), ["a", "b", "c"]))
        metrics = httpx.get(server.url + "/metrics").text
    assert [answer.json() for answer in answers] == [{"text": text, "batch_requests": 3} for text in "ABC"]
    assert [sorted(batch) for batch in app.state.holder.engine.batches] == [["a", "b", "c"]]
    assert metric_value(metrics, "fabula_batch_size_sum", service="echo") == 3
    assert metric_value(metrics, "fabula_batch_size_count", service="echo") == 1
    with pytest.raises(ModelNotReady):  # stopped with the app
        asyncio.run(batcher.submit("late"))


class SelfBatchingEngine(EchoEngine):
    """An engine that batches inside itself (as the llm engines do): the frame starts and stops it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


def test_the_frame_starts_an_engine_that_batches_itself_once_loaded_and_stops_it(tiny_settings: Settings) -> None:
    spec = ServiceSpec(
        name="echo", title="Echo", description="", resolver=lambda _: None, load=lambda settings, device, metrics: SelfBatchingEngine(),
        routers=lambda _: [], engine_batches=True,
    )
    app = spec.create_app(tiny_settings)
    with ServerThread(app):
        assert app.state.holder.wait(timeout=30), app.state.holder.error
        engine = app.state.holder.engine
        assert engine.events == ["start"] and app.state.batcher is None
    assert engine.events == ["start", "stop"]


def test_every_service_has_one_spec_with_its_port_and_url_setting() -> None:
    assert list(SERVICES) == list(SERVICE_NAMES) == list(SERVICE_PORTS)
    for name, spec in SERVICES.items():
        assert spec.name == name and spec.port == SERVICE_PORTS[name]
        assert Settings.model_fields[spec.url_setting].default == f"http://127.0.0.1:{spec.port}"
        assert (spec.batch is not None) != spec.engine_batches, f"{name} declares exactly one batcher"


# --- the bounded body reader ----------------------------------------------------------------------------------------

def _request(chunks: list[bytes], pulled: list[int], *, disconnect_after: int | None = None, declared: int | None = None) -> Request:
    headers = [(b"content-length", str(declared).encode())] if declared is not None else []

    async def receive() -> dict:
        index = len(pulled)
        pulled.append(index)
        if disconnect_after is not None and index >= disconnect_after:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}, receive)


async def test_body_reader_stops_at_the_chunk_that_passes_the_limit() -> None:
    pulled: list[int] = []
    with pytest.raises(PayloadTooLarge) as raised:
        await read_body(_request([b"x" * 400] * 10, pulled), BodyLimit(max_bytes=1000, param="body"))
    assert pulled == [0, 1, 2]  # 1,200 bytes seen; the other 2,800 were never read
    assert raised.value.param == "body" and "1,000" in raised.value.message


async def test_body_reader_refuses_a_declared_length_before_reading() -> None:
    pulled: list[int] = []
    with pytest.raises(PayloadTooLarge):
        await read_body(_request([b"x"], pulled, declared=10**9), BodyLimit(max_bytes=1000))
    assert pulled == []


async def test_body_reader_reports_a_client_that_left_mid_body() -> None:
    with pytest.raises(ClientDisconnected):
        await read_body(_request([b"x" * 10] * 5, [], disconnect_after=2), BodyLimit(max_bytes=1000))


async def test_body_limit_middleware_cuts_a_chunked_body_off() -> None:
    pulled: list[int] = []
    sent: list[dict] = []
    request = _request([b"x" * 400] * 10, pulled)

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        while (await receive())["type"] == "http.request":
            pass

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = BodyLimitMiddleware(app, limit=BodyLimit(max_bytes=1000, param="image"))
    await middleware(request.scope, request.receive, send)
    assert pulled == [0, 1, 2]
    assert sent[0]["status"] == 413 and b'"param": "image"' in sent[1]["body"]


def test_json_depth_is_limited_and_strings_do_not_count() -> None:
    assert json_depth_exceeds(DEEP_JSON, 64)
    assert not json_depth_exceeds(b'{"a": "' + b"[" * 500 + b'\\"' + b"{" * 500 + b'"}', 64)
    with pytest.raises(InvalidRequest) as raised:
        parse_json(DEEP_JSON)
    assert raised.value.param == "body" and "64" in raised.value.message
    assert parse_json(b'{"a": [[[1]]]}') == {"a": [[[1]]]}


# --- the dtype policy -----------------------------------------------------------------------------------------------

def test_dtype_policy_is_fp32_on_cpu_and_follows_an_override() -> None:
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype("cpu", override="bf16") == torch.bfloat16
    assert choose_dtype("cuda:0", override="float16") == torch.float16
    assert parse_dtype("auto") is None
    with pytest.raises(InvalidSetting) as raised:
        parse_dtype("float8")
    assert raised.value.param == "FABULA_MODEL_DTYPE"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_dtype_policy_picks_half_precision_by_gpu_capability() -> None:
    major, _ = torch.cuda.get_device_capability(0)
    assert choose_dtype("cuda:0") == (torch.bfloat16 if major >= 8 else torch.float16)
    assert choose_dtype("cuda:0", prefer=torch.float16) == torch.float16


# --- the web app's small bodies go through the same reader ------------------------------------------------------------

@pytest.fixture(scope="module")
def web_body_url() -> Iterator[str]:
    from webapp.api.bodies import read_body as read_web_body
    from webapp.api.schemas import PageEdit
    from shared.http_errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/edit")
    async def edit(request: Request) -> dict:
        return (await read_web_body(request, PageEdit)).model_dump()

    with ServerThread(app) as server:
        yield server.url + "/edit"


def test_web_app_bodies_read_json_and_forms_within_the_limit(web_body_url: str) -> None:
    assert httpx.post(web_body_url, json={"what": "image"}).json()["what"] == "image"
    assert httpx.post(web_body_url, data={"what": "text", "instruction": "shorter"}).json()["instruction"] == "shorter"
    assert httpx.post(web_body_url, files={"what": (None, "image")}).json()["what"] == "image"
    from webapp.api.bodies import MAX_BODY_BYTES

    too_big = httpx.post(web_body_url, content=b'{"what": "' + b"x" * MAX_BODY_BYTES + b'"}', headers={"content-type": "application/json"})
    assert assert_error_shape(too_big, 413, "payload_too_large")["param"] == "body"
    form_too_big = httpx.post(web_body_url, data={"what": "x" * MAX_BODY_BYTES})
    assert_error_shape(form_too_big, 413, "payload_too_large")
    deep = httpx.post(web_body_url, content=DEEP_JSON, headers={"content-type": "application/json"})
    assert assert_error_shape(deep, 400, "invalid_request_error")["param"] == "body"

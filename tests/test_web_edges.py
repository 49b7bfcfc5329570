"""The web app at its edges, over real HTTP on loopback: one throttle for every way a key is tried, the client
address only from proxies the operator names, the host names it answers to, outages of the job database and
Redis answered 503 (never 500), the reader without bidi overrides, and 404s in the error shape."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from shared.http_errors import install_error_handlers  # noqa: E402
from shared.request_context import RequestContextMiddleware  # noqa: E402
from shared.server_thread import ServerThread, free_port  # noqa: E402
from shared.settings import Settings  # noqa: E402
from webapp.api.rate_limit import RedisRateLimiter  # noqa: E402
from webapp.app import create_web_app, server_options  # noqa: E402
from webapp.jobs.database import open_engine  # noqa: E402
from webapp.reader import ReaderBook, ReaderPage  # noqa: E402
from webapp.reader.page import render_reader  # noqa: E402

API_KEY = "edge-key"
PUBLIC_URL = "https://books.example.com"
UNKNOWN_STORY = "/api/v1/stories/0123456789abcdef"
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def serve(settings: Settings, *, local_only: bool = False) -> ServerThread:
    """The web app under uvicorn with the options every start of it passes (`server_options`)."""
    port = free_port()
    server = ServerThread(create_web_app(settings, port=port, start_services=False), port=port)
    config = uvicorn.Config(
        server.server.config.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2,
        **server_options(settings),
    )
    server.server = uvicorn.Server(config)
    server.thread = threading.Thread(target=server.server.run, kwargs={"sockets": [server.socket]}, daemon=True)
    return server.start(timeout=120)


def from_address(server: ServerThread, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x address is loopback)."""
    return httpx.Client(base_url=server.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param"}
    if error_type:
        assert body["error"]["type"] == error_type
    return body["error"]


@pytest.fixture(scope="module")
def keyed(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = tiny_settings.model_copy(update={
        "data_dir": tmp_path_factory.mktemp("edges-keyed"), "api_key": SecretStr(API_KEY), "public_url": PUBLIC_URL,
        "allowed_hosts": ["studio.internal", ".corp.example"],
    })
    server = serve(settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_proxy(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Trusts `X-Forwarded-For` from 127.0.0.9 only."""
    settings = tiny_settings.model_copy(update={
        "data_dir": tmp_path_factory.mktemp("edges-proxy"), "api_key": SecretStr(API_KEY), "forwarded_allow_ips": "127.0.0.9",
    })
    server = serve(settings)
    yield server
    server.stop()


# ---- one throttle for the studio's login and the API ----------------------------------------------------------
def test_wrong_studio_logins_are_throttled_and_the_right_key_still_logs_in(keyed: ServerThread) -> None:
    with from_address(keyed, "127.0.0.3") as guesser:
        answers = [guesser.post("/login", data={"username": "x", "password": f"guess-{number}"}) for number in range(10)]
        assert [answer.status_code for answer in answers[:5]] == [400] * 5  # Gradio's "Incorrect credentials."
        for answer in answers[5:]:
            error = assert_error(answer, 429, "rate_limit_exceeded")
            assert error["param"] == "Authorization" and 1 <= int(answer.headers["retry-after"]) <= 60
        # The same counter guards the API: that address's wrong keys are refused there too.
        assert_error(guesser.get("/api/v1/options", headers={"Authorization": "Bearer guess-api"}), 429, "rate_limit_exceeded")
        # The right key is never locked out, at the login or the API.
        login = guesser.post("/login", data={"username": "x", "password": API_KEY})
        assert login.status_code == 200 and login.json() == {"success": True}
        assert guesser.get("/api/v1/options", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_x_forwarded_for_is_ignored_from_a_proxy_nobody_named(keyed: ServerThread) -> None:
    with from_address(keyed, "127.0.0.4") as guesser:
        answers = [
            guesser.get("/api/v1/options", headers={"Authorization": f"Bearer guess-{number}", "X-Forwarded-For": f"10.0.0.{number}"})
            for number in range(6)
        ]
    assert [answer.status_code for answer in answers] == [401] * 5 + [429]


def test_x_forwarded_for_names_the_client_behind_a_named_proxy(behind_proxy: ServerThread) -> None:
    with from_address(behind_proxy, "127.0.0.9") as proxy:
        def guess(client: str, key: str = "guess") -> int:
            return proxy.get("/api/v1/options", headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": client}).status_code

        assert [guess("203.0.113.5") for _ in range(6)] == [401] * 5 + [429]
        assert guess("203.0.113.6") == 401  # another client behind the same proxy is not held up
        assert guess("203.0.113.5", API_KEY) == 200


# ---- the hosts the server answers to --------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["rebind.attacker.example", "books.example.com.evil.example", "localhost.attacker.example", "[::1"])
def test_a_host_it_does_not_serve_is_refused_with_400(keyed: ServerThread, host: str) -> None:
    response = httpx.get(f"{keyed.url}/api/v1/options", headers={"Host": host, "Authorization": f"Bearer {API_KEY}"})
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == "Host" and "FABULA_ALLOWED_HOSTS" in error["message"]
    # A rebinding page's change is stopped before the cross-site guard has to judge its Origin.
    change = httpx.post(f"{keyed.url}{UNKNOWN_STORY}/resume", headers={"Host": host, "Origin": f"http://{host}"})
    assert_error(change, 400)


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "[::1]", "10.1.2.3", "books.example.com", "studio.internal", "corp.example", "a.corp.example"]
)
def test_loopback_addresses_the_public_host_and_allowed_hosts_are_served(keyed: ServerThread, host: str) -> None:
    response = httpx.get(f"{keyed.url}/api/v1/options", headers={"Host": f"{host}:{keyed.port}", "Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200, response.text


def test_a_star_allows_every_host(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("edges-any"), "allowed_hosts": ["*"]})
    server = serve(settings)
    try:
        assert httpx.get(f"{server.url}/api/v1/options", headers={"Host": "anything.example"}).status_code == 200
    finally:
        server.stop()


# ---- outages answer 503 --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """No key, a generous limit; the tests that break a dependency put it back."""
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("edges-plain"), "rate_limit_per_minute": 1000})
    server = serve(settings)
    yield server
    server.stop()


@pytest.fixture
def database_down(plain: ServerThread) -> Iterator[ServerThread]:
    """The job store pointed at a PostgreSQL that is not there (nothing listens on the port)."""
    store = plain.server.config.app.state.web.workshop.store
    working = store.engine
    store.engine = open_engine(f"postgresql+psycopg://fabula@127.0.0.1:{free_port()}/fabula")
    yield plain
    store.engine.dispose()
    store.engine = working


def test_an_unreachable_job_database_is_503_with_retry_after_and_readyz_names_it(database_down: ServerThread) -> None:
    with httpx.Client(base_url=database_down.url, timeout=30) as http:
        for answer in (http.get(UNKNOWN_STORY), http.delete(UNKNOWN_STORY), http.post(f"{UNKNOWN_STORY}/resume")):
            error = assert_error(answer, 503, "service_unavailable")
            assert int(answer.headers["retry-after"]) >= 1 and "job database" in error["message"]
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready" and ready.json()["down"] == ["database"]
        assert http.get("/healthz").status_code == 200  # alive, only not ready


def test_a_redis_rate_limiter_that_is_down_still_serves_and_limits(plain: ServerThread) -> None:
    state = plain.server.config.app.state.web
    working = state.limiter
    state.limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", per_minute=3)
    try:
        with from_address(plain, "127.0.0.5") as http:
            answers = [http.post(f"{UNKNOWN_STORY}/resume") for _ in range(4)]
    finally:
        state.limiter = working
    assert [answer.status_code for answer in answers[:3]] == [404] * 3  # served: the story is simply unknown
    assert_error(answers[3], 429, "rate_limit_exceeded")  # counted in the process while Redis is away


def test_a_dependencys_connection_error_anywhere_is_a_503_not_a_500() -> None:
    import kombu.exceptions
    import redis
    import sqlalchemy.exc

    failures: dict[str, Exception] = {
        "redis": redis.ConnectionError("Connection refused"),
        "redis-timeout": redis.TimeoutError("Timeout reading from socket"),
        "celery": kombu.exceptions.OperationalError("Error 111 connecting to localhost:6379"),
        "database": sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        "wrapped": RuntimeError("the store failed"),
    }
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fail/{name}")
    async def fail(name: str) -> None:
        if name == "wrapped":
            raise RuntimeError("the store failed") from redis.ConnectionError("Connection refused")
        raise failures[name]

    async def failing_middleware(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["path"] == "/in-middleware":
            raise redis.ConnectionError("Connection refused")
        await routes(scope, receive, send)

    routes = app
    served = RequestContextMiddleware(failing_middleware)
    with ServerThread(served) as server:
        for name, dependency in [("redis", "Redis"), ("redis-timeout", "Redis"), ("celery", "Redis"), ("database", "job database"), ("wrapped", "Redis")]:
            answer = httpx.get(f"{server.url}/fail/{name}")
            error = assert_error(answer, 503, "service_unavailable")
            assert dependency in error["message"] and answer.headers["retry-after"] == "5"
        assert_error(httpx.get(f"{server.url}/in-middleware"), 503, "service_unavailable")


# ---- the reader and 404s -------------------------------------------------------------------------------------
def test_readyz_is_ready_while_the_database_answers(plain: ServerThread) -> None:
    ready = httpx.get(f"{plain.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["down"] == []


def test_the_reader_drops_bidi_overrides_like_the_pdf_and_epub() -> None:
    book = ReaderBook(
        token="t" * 43, title=f"The {BIDI_CONTROLS}fox", author="\u202eMia", language="en",
        pages=[ReaderPage(number=1, text=f"Once {BIDI_CONTROLS[:5]}upon{BIDI_CONTROLS[5:]} a time.")], pdf_url="/books/t.pdf",
    )
    page = render_reader(book, lambda name: f"/reader/{name}")
    assert not any(control in page for control in BIDI_CONTROLS)
    assert "The fox" in page and "Once upon a time." in page and "Mia" in page


@pytest.mark.parametrize("path", ["/nothing-here", "/books/not-a-token", "/gradio_api/nothing", "/assets/missing.js", "/read/"])
def test_404s_outside_the_api_come_in_the_error_shape(plain: ServerThread, path: str) -> None:
    error = assert_error(httpx.get(plain.url + path), 404, "not_found")
    assert path in error["message"] and error["param"] == "path"

"""The web app under attack, over real HTTP on loopback: clients that pose as new ones, key guesses, bodies that
nest or grow without end, foreign content types, wrong methods, cross-site forms, expired books through Gradio's
file route, and a `fabula up` killed outright. The tiny services run for real; no mocks."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from shared.server_thread import ServerThread, free_port  # noqa: E402
from shared.settings import Settings  # noqa: E402
from webapp.app import create_web_app  # noqa: E402

API_KEY = "s3cret-key"
MAX_UPLOAD = 256 * 1024
PUBLIC_URL = "https://books.example.com"
UNKNOWN_STORY = "/api/v1/stories/0123456789abcdef"
NESTED = b"[" * 5000 + b"]" * 5000


def web_app(settings: Settings, *, start_services: bool = False, timeout: float = 120) -> ServerThread:
    port = free_port()
    return ServerThread(create_web_app(settings, port=port, start_services=start_services), port=port).start(timeout=timeout)


@pytest.fixture(scope="module")
def bare(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """No API key, a small upload limit, a public address, and no services (nothing here makes a book)."""
    settings = tiny_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("bare-data"), "max_upload_bytes": MAX_UPLOAD, "public_url": PUBLIC_URL, "rate_limit_per_minute": 1000}
    )
    server = web_app(settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limited(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """No API key and two changes per client per minute."""
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("limited-data"), "rate_limit_per_minute": 2})
    server = web_app(settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("keyed-data"), "api_key": SecretStr(API_KEY)})
    server = web_app(settings)
    yield server
    server.stop()


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(response.json()["error"]) == {"type", "message", "param"}
    assert error["message"] and "Traceback" not in error["message"]
    if error_type:
        assert error["type"] == error_type
    return error


def raw_exchange(port: int, head: str, chunks: Iterator[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and then body pieces until the server answers; the status, headers and body it sent.

    The body pieces are sent one at a time and the socket is read between them, so an answer that comes before
    the body is complete is seen as such; `chunks` is finite, and every read waits at most 30 s.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        answer = b""
        for chunk in chunks:
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
                sock.settimeout(30)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _length(answer: bytes) -> int:
    match = re.search(rb"content-length:\s*(\d+)", answer.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(match.group(1)) if match else 1


# ---- 1. a bearer value makes no new client when no key is set ---------------------------------------------------
def test_random_bearer_values_do_not_escape_the_rate_limit_without_a_key(limited: ServerThread) -> None:
    with httpx.Client(base_url=limited.url, timeout=30) as http:
        answers = [
            http.post("/api/v1/stories", headers={"Authorization": f"Bearer {secrets.token_hex(8)}"},
                      files={"photo": ("note.jpg", b"not a photo", "image/jpeg")})
            for _ in range(3)
        ]
    assert [answer.status_code for answer in answers[:2]] == [400, 400]
    error = assert_error(answers[2], 429, "rate_limit_exceeded")
    assert int(answers[2].headers["retry-after"]) >= 1 and "FABULA_RATE_LIMIT_PER_MINUTE" in error["message"]


# ---- 2. key guesses are throttled per address -------------------------------------------------------------------
def test_wrong_keys_from_one_address_are_throttled_with_retry_after(keyed: ServerThread) -> None:
    # Every 127.x address is loopback: the guesses come from 127.0.0.2, so other tests' 127.0.0.1 is untouched.
    guesser = httpx.Client(base_url=keyed.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with guesser, httpx.Client(base_url=keyed.url, timeout=30) as owner:
        failures = [guesser.get("/api/v1/options", headers={"Authorization": f"Bearer guess-{number}"}) for number in range(5)]
        assert [failure.status_code for failure in failures] == [401] * 5
        throttled = guesser.get("/api/v1/options", headers={"Authorization": "Bearer guess-6"})
        error = assert_error(throttled, 429, "rate_limit_exceeded")
        assert 1 <= int(throttled.headers["retry-after"]) <= 60 and error["param"] == "Authorization"
        # The right key is never locked out (behind a shared proxy address, one guesser would lock out everyone);
        # another address is not held up either.
        assert guesser.get("/api/v1/options", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert owner.get("/api/v1/options", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


# ---- 4. deeply nested JSON -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/pages/1/regenerate", "/pages", "/pages/1/report"])
def test_deeply_nested_json_is_400_on_the_edit_routes(bare: ServerThread, path: str) -> None:
    response = httpx.post(f"{bare.url}{UNKNOWN_STORY}{path}", content=NESTED, headers={"Content-Type": "application/json"}, timeout=30)
    error = assert_error(response, 400, "invalid_request_error")
    assert "nests more than 64 levels" in error["message"] and error["param"] == "body"


def test_deeply_nested_json_is_400_on_the_illustrate_service(tiny_settings: Settings) -> None:
    from webapp.launcher import create_service_app, wait_ready

    with ServerThread(create_service_app("illustrate", tiny_settings)) as illustrate:
        response = httpx.post(
            f"{illustrate.url}/v1/images/generations", content=NESTED, headers={"Content-Type": "application/json"}, timeout=30
        )
        # The body is refused before the model is needed; the service stops only once its loading is over, since
        # a load still running in the background would share torch's process-wide state with what comes next.
        wait_ready(illustrate.url, name="illustrate", timeout_s=600)
    error = assert_error(response, 400, "invalid_request_error")
    assert "nests more than 64 levels" in error["message"]


# ---- 6. uploads stop at FABULA_MAX_UPLOAD_BYTES ------------------------------------------------------------------
_PART_HEAD = b'--edge\r\nContent-Disposition: form-data; name="%s"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'


@pytest.mark.parametrize(("path", "field"), [("/api/v1/stories", b"photo"), ("/gradio_api/upload", b"files")])
def test_a_declared_oversized_upload_is_413_before_its_body_is_read(bare: ServerThread, path: str, field: bytes) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{bare.port}\r\nContent-Type: multipart/form-data; boundary=edge\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    )
    pieces = [_PART_HEAD % field] + [b"x" * 65536] * 16  # 1 MiB of the 200 MiB it announced, then it stops
    status, headers, body = raw_exchange(bare.port, head, iter(pieces))
    assert status == 413 and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "payload_too_large" and "FABULA_MAX_UPLOAD_BYTES" in error["message"] and f"{MAX_UPLOAD:,}" in error["message"]


@pytest.mark.parametrize(("path", "field"), [("/api/v1/stories", b"photo"), ("/gradio_api/upload", b"files")])
def test_a_chunked_upload_is_cut_off_at_the_limit(bare: ServerThread, path: str, field: bytes) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{bare.port}\r\nContent-Type: multipart/form-data; boundary=edge\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    first = _PART_HEAD % field
    piece = b"x" * 65536
    # Sixteen times the limit would follow; the answer must come once the limit is passed.
    pieces = [b"%x\r\n%s\r\n" % (len(first), first)] + [b"%x\r\n%s\r\n" % (len(piece), piece)] * (16 * MAX_UPLOAD // len(piece))
    status, _, body = raw_exchange(bare.port, head, iter(pieces))
    assert status == 413, body
    assert json.loads(body)["error"]["type"] == "payload_too_large"


# ---- 7. only JSON or form bodies on the edit routes -------------------------------------------------------------
EDIT_BODIES = {
    "/pages/1/regenerate": {"what": "image"}, "/pages": {"count": 1}, "/pages/1/report": {"what": "picture", "reason": "scary"},
    "/versions": {}, "/resume": {},
}


@pytest.mark.parametrize("path", list(EDIT_BODIES))
def test_edit_routes_refuse_other_content_types_with_415(bare: ServerThread, path: str) -> None:
    with httpx.Client(base_url=bare.url, timeout=30) as http:
        error = assert_error(http.post(UNKNOWN_STORY + path, content=b"<what>image</what>", headers={"Content-Type": "text/xml"}), 415)
        assert error["param"] == "Content-Type" and "text/xml" in error["message"]
        assert_error(http.post(UNKNOWN_STORY + path, content=b"what=image"), 415)  # a body that says nothing of its type
        # What is read passes on to the route, which does not know the story.
        assert_error(http.post(UNKNOWN_STORY + path, json=EDIT_BODIES[path]), 404, "not_found")
        assert_error(http.post(UNKNOWN_STORY + path, data={key: str(value) for key, value in EDIT_BODIES[path].items()}), 404, "not_found")
        if path in ("/versions", "/resume"):
            assert_error(http.post(UNKNOWN_STORY + path), 404, "not_found")


# ---- 8. wrong methods and unknown paths -------------------------------------------------------------------------
def test_wrong_method_on_a_known_path_is_405_with_allow(bare: ServerThread) -> None:
    with httpx.Client(base_url=bare.url, timeout=30) as http:
        options = http.delete("/api/v1/options")
        error = assert_error(options, 405, "method_not_allowed")
        assert options.headers["allow"] == "GET" and "DELETE" in error["message"]
        story = http.put(UNKNOWN_STORY)
        assert_error(story, 405, "method_not_allowed")
        assert set(story.headers["allow"].split(", ")) == {"GET", "DELETE"}
        assert_error(http.post("/healthz"), 405, "method_not_allowed")
        assert_error(http.post("/books/" + "A" * 43 + ".pdf"), 405, "method_not_allowed")


def test_unknown_api_paths_are_404_in_the_error_shape(bare: ServerThread) -> None:
    with httpx.Client(base_url=bare.url, timeout=30) as http:
        for path in ("/api/v1/nothing-here", "/api/v1", f"{UNKNOWN_STORY}/chapters"):
            error = assert_error(http.get(path), 404, "not_found")
            assert path in error["message"]
        assert http.get("/").status_code == 200  # the studio still has the rest


# ---- 9. the OpenAPI document tells the truth about validation errors --------------------------------------------
def test_openapi_documents_400_with_the_error_schema_and_no_422(bare: ServerThread) -> None:
    document = httpx.get(f"{bare.url}/openapi.json", timeout=30).json()
    assert '"422"' not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and set(schemas["Error"]["properties"]["error"]["properties"]) == {"type", "message", "param"}
    for path, method in [("/api/v1/stories", "post"), ("/api/v1/stories/{story_id}/pages", "post"), ("/api/v1/stories/{story_id}", "get")]:
        invalid = document["paths"][path][method]["responses"]["400"]
        assert invalid["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


# ---- 10. cross-site changes ------------------------------------------------------------------------------------
def test_cross_site_changes_are_refused_without_a_key(bare: ServerThread) -> None:
    with httpx.Client(base_url=bare.url, timeout=30) as http:
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            error = assert_error(http.post(f"{UNKNOWN_STORY}/resume", headers=headers), 403)
            assert error["param"] == "Origin" and "another site" in error["message"]
        assert_error(http.delete(UNKNOWN_STORY, headers={"Origin": "https://evil.example"}), 403)
        assert_error(http.post("/gradio_api/upload", headers={"Origin": "https://evil.example"}, files={"files": ("a.jpg", b"x")}), 403)
        # Its own pages, its public address, and programs that send no Origin are let through.
        for headers in ({"Origin": bare.url}, {"Origin": PUBLIC_URL}, {}, {"Origin": bare.url, "Sec-Fetch-Site": "same-origin"}):
            assert_error(http.post(f"{UNKNOWN_STORY}/resume", headers=headers), 404, "not_found")
        assert http.get("/api/v1/options", headers={"Origin": "https://evil.example"}).status_code == 200  # reading changes nothing


def test_a_cross_site_change_with_the_valid_key_is_let_through(keyed: ServerThread) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        evil = {"Origin": "https://evil.example"}
        assert_error(http.post(f"{UNKNOWN_STORY}/resume", headers=evil), 403)
        assert_error(http.post(f"{UNKNOWN_STORY}/resume", headers={**evil, "Authorization": "Bearer not-it"}), 403)
        assert_error(http.post(f"{UNKNOWN_STORY}/resume", headers={**evil, "Authorization": f"Bearer {API_KEY}"}), 404, "not_found")


# ---- 5. an expired or deleted book is gone from Gradio's routes too ----------------------------------------------
@pytest.fixture(scope="module")
def studio_book(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, dict]]:
    """The web app with its tiny services, and one book made through the studio's own API (gradio_client)."""
    from gradio_client import Client, handle_file

    settings = tiny_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("studio-data"), "public_url": None})
    server = web_app(settings, start_services=True, timeout=600)
    workshop = Client(server.url, verbose=False, download_files=False)
    try:
        photo = handle_file(str(Path(__file__).parent / "assets" / "photo.jpg"))
        outputs = workshop.predict(photo, 2, "en", api_name="/generate")
    finally:
        workshop.close()
    yield server, {"outputs": outputs}
    server.stop()


def _file_urls(outputs: object) -> list[str]:
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("url"), str) and "/gradio_api/file=" in value["url"]:
                found.append(value["url"])
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(outputs)
    return found


def test_expired_or_deleted_book_is_gone_from_gradios_file_route(studio_book: tuple[ServerThread, dict]) -> None:
    server, made = studio_book
    workshop = server.server.config.app.state.web.workshop
    urls = _file_urls(made["outputs"])
    book_copy = next(url for url in urls if url.endswith(".pdf"))
    link_html = next(item for item in made["outputs"] if isinstance(item, str) and "/read/" in item)
    record = workshop.store.find_by_token(re.search(r"/read/([A-Za-z0-9_-]+)", link_html).group(1))
    artifact = f"{server.url}/gradio_api/file={workshop.artifacts.path(record.id, 'book.pdf')}"
    cover_artifact = f"{server.url}/gradio_api/file={workshop.artifacts.path(record.id, 'cover.png')}"
    # The copies Gradio made of the book and its pictures (the QR code is drawn, not copied: it only holds the
    # reader's link, which is gone with the book).
    pictures = [url for url in urls if re.search(r"/(cover|page-\d{2})\.png$", url)]
    assert len(pictures) >= 3
    reachable = [book_copy, artifact, cover_artifact, *pictures]
    with httpx.Client(timeout=30) as http:
        assert http.get(book_copy).content.startswith(b"%PDF")
        assert all(http.get(url).status_code == 200 for url in reachable)

        workshop.store.update(record.id, book_expires_at=time.time() - 1)
        try:
            for url in reachable:
                error = assert_error(http.get(url), 404, "not_found")
                assert "expired" in error["message"]
        finally:
            workshop.store.update(record.id, book_expires_at=None)
        assert http.get(book_copy).status_code == 200

        assert http.delete(f"{server.url}/api/v1/stories/{record.id}").status_code == 204
        for url in reachable:
            assert http.get(url).status_code in (403, 404) and "%PDF" not in http.get(url).text


# ---- 3. `fabula up` leaves nothing behind and adopts nothing ------------------------------------------------------
SERVICE_URL_SETTINGS = ("FABULA_CAPTION_URL", "FABULA_ILLUSTRATE_URL", "FABULA_LLM_URL", "FABULA_NARRATE_URL")


def _up_environment(tiny_settings: Settings, work: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {
        **os.environ, "FABULA_DATA_DIR": str(work / "data"), "FABULA_CACHE_DIR": str(tiny_settings.cache_dir),
        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
        **{setting: f"http://127.0.0.1:{port}" for setting, port in ports.items()},
    }
    env.pop("FABULA_API_KEY", None)
    return env


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_killed_fabula_up_takes_its_services_with_it(tiny_settings: Settings, tmp_path: Path) -> None:
    ports = {setting: free_port() for setting in SERVICE_URL_SETTINGS}
    web_port = free_port()
    log_path = tmp_path / "fabula-up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "up", "--profile", "tiny", "--port", str(web_port)],
            stdout=log, stderr=subprocess.STDOUT, env=_up_environment(tiny_settings, tmp_path, ports), cwd=tmp_path,
        )
        try:
            for _ in range(1200):  # at most ten minutes, half a second at a time
                if process.poll() is not None:
                    pytest.fail(f"`fabula up` stopped (exit code {process.returncode}):\n{log_path.read_text(errors='replace')[-4000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{web_port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail(f"`fabula up` was not ready:\n{log_path.read_text(errors='replace')[-4000:]}")
            assert all(_listening(port) for port in ports.values())
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            held = set(ports.values())
            for _ in range(120):  # each service shuts down on its SIGTERM; wait at most a minute
                held = {port for port in held if _listening(port)}
                if not held:
                    break
                time.sleep(0.5)
            assert not held, f"ports still held after `fabula up` was killed: {sorted(held)}"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def test_fabula_up_refuses_a_port_it_did_not_start(tiny_settings: Settings, tmp_path: Path) -> None:
    ports = {setting: free_port() for setting in SERVICE_URL_SETTINGS}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["FABULA_ILLUSTRATE_URL"]))
        squatter.listen()
        finished = subprocess.run(
            [sys.executable, "-m", "webapp.cli", "up", "--profile", "tiny", "--port", str(free_port())],
            capture_output=True, text=True, env=_up_environment(tiny_settings, tmp_path, ports), cwd=tmp_path, timeout=300,
        )
    assert finished.returncode != 0
    assert f"Port {ports['FABULA_ILLUSTRATE_URL']}" in finished.stderr and "FABULA_ILLUSTRATE_URL" in finished.stderr
    assert "Starting the caption" in finished.stdout  # it stopped before any service was started
    assert not any(_listening(port) for setting, port in ports.items() if setting != "FABULA_ILLUSTRATE_URL")

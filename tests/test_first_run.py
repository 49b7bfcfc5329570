"""`make up` on a machine without weights: one profile everywhere, and a first run that fetches the one that fits.

The hub is outside the product, so a small stand-in on loopback answers for it (through HF_ENDPOINT) with the
calls the hub client makes: the model listing with file sizes, the file tree, and `resolve/<revision>/<file>`
with HEAD, GET and byte ranges. It serves the cpu profile's repositories with small files. `fabula` runs as a
child process, as a person runs it (the hub client reads HF_HOME and HF_HUB_OFFLINE once, at import); no test starts
the services: `fabula up` is pointed at a web port already taken, which it checks after choosing its profile.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from gpu_setup.assignment import GpuInfo
from gpu_setup.doctor import memory_gib
from gpu_setup.first_run import first_run_profile
from gpu_setup.picture_weights import picture_weights
from gpu_setup.profile_choice import Machine, ProfileChoice, machine_fit
from services.llm.gguf import hub_gguf
from shared.profiles import model_id_for
from shared.settings import Profile, Settings

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 240  # a command that has not finished by then is hanging, which is what these tests look for
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MB = 1 << 20


# ---- the stand-in hub -----------------------------------------------------------------------------------------------
def blob(name: str, size: int) -> bytes:
    return random.Random(name).randbytes(size)


def config(name: str) -> bytes:
    """A small JSON file of its own (the cache keeps one copy of equal files, so each differs)."""
    return json.dumps({"name": name}).encode()


def cpu_profile_repositories(caption_weights: int = 6 * MB) -> tuple[dict[str, dict[str, bytes]], set[str]]:
    """The repositories the cpu profile pulls, each with the files Fabula loads and some it must leave alone; and
    `repository/file` for every file it loads. `caption_weights` is the size of the caption model's weights file."""
    settings = Settings(profile=Profile.cpu)
    caption, illustrate = model_id_for("caption", settings), model_id_for("illustrate", settings)
    llm_repository, llm_file = hub_gguf(model_id_for("llm", settings) or "") or ("", "")
    model_index = {
        "_class_name": "StableDiffusionXLPipeline", "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    }
    loads: dict[str, dict[str, bytes]] = {
        caption or "": {
            "config.json": config("llava"), "tokenizer.json": config("tokenizer"), "preprocessor_config.json": config("processor"),
            "model.safetensors": blob("caption", caption_weights),
        },
        illustrate or "": {
            "model_index.json": json.dumps(model_index).encode(), "scheduler/scheduler_config.json": config("scheduler"),
            "unet/config.json": config("unet"), "unet/diffusion_pytorch_model.safetensors": blob("unet", 8 * MB),
            "vae/config.json": config("vae"), "vae/diffusion_pytorch_model.safetensors": blob("vae", 2 * MB),
        },
        llm_repository: {llm_file: blob("gguf", 5 * MB)},
    }
    for weights in picture_weights(settings):
        loads[weights.model_id] = {name: blob(f"{weights.model_id}/{name}", 300_000) for name in weights.files}
    never = {
        caption or "": {"pytorch_model.bin": blob("bin", 6 * MB), "README.md": b"# caption"},
        illustrate or "": {"unet/diffusion_pytorch_model.fp16.safetensors": blob("fp16", 4 * MB), "unet/model.onnx": b"onnx"},
        llm_repository: {llm_file.replace("q4_k_m", "q8_0"): blob("q8", 7 * MB)},
    }
    repositories = {repository: {**files, **never.get(repository, {})} for repository, files in loads.items()}
    return repositories, {f"{repository}/{name}" for repository, files in loads.items() for name in files}


class StandInHub:
    """The Hugging Face Hub's HTTP API as `model_info`, `hf_hub_download` and `snapshot_download` call it.

    `drop_once` names `repository/file`s whose first GET sends half the file and then closes the connection;
    `failing` names files whose GET answers HTTP 500 for as long as they are in the set. `requests` records
    (method, `repository/file` or path, Range header) for every request.
    """

    def __init__(self, repositories: dict[str, dict[str, bytes]], *, drop_once: Collection[str] = (), failing: Collection[str] = ()) -> None:
        self.repositories = repositories
        self.drop_once = set(drop_once)
        self.failing = set(failing)
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                hub.answer(self, head=True)

            def do_GET(self) -> None:
                hub.answer(self, head=False)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandInHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloads(self) -> list[str]:
        """`repository/file` of every GET of a file, in order."""
        return [what for method, what, _ in self.requests if method == "GET" and not what.startswith("/")]

    def answer(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repository = "/".join(parts[2:4])
            self.requests.append((request.command, path, None))
            files = self.repositories.get(repository)
            if files is None:
                return self.send_json(request, {"error": "Repository not found"}, status=404, head=head)
            if len(parts) > 5 and parts[4] == "tree":
                entries = [{"type": "file", "path": name, "size": len(data), "oid": sha1(data)} for name, data in files.items()]
                return self.send_json(request, entries, head=head)
            siblings = [{"rfilename": name, "size": len(data), "blobId": sha1(data)} for name, data in files.items()]
            return self.send_json(request, {"id": repository, "modelId": repository, "sha": COMMIT, "private": False, "siblings": siblings}, head=head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repository, name = "/".join(parts[:2]), "/".join(parts[4:])
            self.requests.append((request.command, f"{repository}/{name}", request.headers.get("Range")))
            data = self.repositories.get(repository, {}).get(name)
            if data is None:
                return self.send_json(request, {"error": "Entry not found"}, status=404, head=head, headers={"X-Error-Code": "EntryNotFound"})
            return self.send_file(request, f"{repository}/{name}", data, head=head)
        self.requests.append((request.command, path, None))
        return self.send_json(request, {"error": "Not found"}, status=404, head=head)

    def send_file(self, request: BaseHTTPRequestHandler, key: str, data: bytes, *, head: bool) -> None:
        if not head and key in self.failing:
            return self.send_json(request, {"error": "Internal Error"}, status=500, head=False)
        start = 0
        if not head and (wanted := request.headers.get("Range")):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", COMMIT)
        request.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("Content-Length", str(len(data) - start))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        if head:
            return
        if key in self.drop_once:
            self.drop_once.discard(key)
            request.wfile.write(data[: len(data) // 2])
            request.wfile.flush()
            request.connection.shutdown(socket.SHUT_WR)  # the connection ends halfway through the file
            request.close_connection = True
            return
        request.wfile.write(data[start:])

    @staticmethod
    def send_json(request: BaseHTTPRequestHandler, body: object, *, status: int = 200, head: bool, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        if not head:
            request.wfile.write(payload)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# ---- running fabula -------------------------------------------------------------------------------------------------
@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something already listens on: `fabula up --port` it stops there, after choosing (and fetching) its profile."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def fabula(*args: str, home: Path, **environment: str) -> subprocess.CompletedProcess:
    """`fabula ARGS` with every cache and data folder under `home`, no GPU visible and progress bars shown although
    the output is not a terminal (tqdm's TQDM_POSITION=-1)."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("FABULA_", "HF_", "TRANSFORMERS_", "TQDM_")) and not key.lower().endswith("_proxy")
    }
    env.update({
        "HF_HOME": str(home / "hf"), "FABULA_CACHE_DIR": str(home / "cache"), "FABULA_DATA_DIR": str(home / "data"),
        "CUDA_VISIBLE_DEVICES": "", "TQDM_POSITION": "-1",
    })
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "webapp.cli", *args], env=env, cwd=home, capture_output=True, text=True, timeout=HANG_GUARD_S)


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def loaded_bytes(repositories: dict[str, dict[str, bytes]], loads: set[str]) -> int:
    return sum(len(data) for repository, files in repositories.items() for name, data in files.items() if f"{repository}/{name}" in loads)


def blob_of(home: Path, repository: str, data: bytes) -> Path:
    return home / "hf" / "hub" / f"models--{repository.replace('/', '--')}" / "blobs" / hashlib.sha256(data).hexdigest()


# ---- the fetch step: `fabula models pull`, which a first run of `fabula up` runs ---------------------------------------
def test_a_pull_says_how_much_it_downloads_then_fetches_only_the_listed_files_with_a_progress_bar(tmp_path: Path) -> None:
    repositories, loads = cpu_profile_repositories()
    with StandInHub(repositories) as hub:
        pulled = fabula("models", "pull", "cpu", home=tmp_path, HF_ENDPOINT=hub.url)

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    lines = pulled.stdout.splitlines()
    assert lines[0].startswith("Profile: cpu (")
    models = len(repositories)
    assert f"The cpu profile downloads {gigabytes(loaded_bytes(repositories, loads))} ({len(loads)} files of {models} models) from {hub.url}" in pulled.stdout
    summary = next(index for index, line in enumerate(lines) if line.startswith("The cpu profile downloads"))
    assert not [line for line in lines[:summary] if " ready at " in line]  # said before anything is fetched
    assert "Fetching" in pulled.stderr and "100%" in pulled.stderr  # the hub client's progress bars
    assert sorted(hub.downloads()) == sorted(loads)  # each file Fabula loads once, nothing else


def test_a_connection_dropped_halfway_through_a_file_resumes_where_it_stopped(tmp_path: Path) -> None:
    # The hub client writes what it receives in 10 MiB pieces, so the file is big enough for one to arrive before the drop.
    repositories, _ = cpu_profile_repositories(caption_weights=24 * MB)
    caption = model_id_for("caption", Settings(profile=Profile.cpu)) or ""
    weights = repositories[caption]["model.safetensors"]
    with StandInHub(repositories, drop_once={f"{caption}/model.safetensors"}) as hub:
        pulled = fabula("models", "pull", "cpu", home=tmp_path, HF_ENDPOINT=hub.url)

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert "Trying to resume download" in pulled.stderr
    first, then = [wanted for method, what, wanted in hub.requests if method == "GET" and what == f"{caption}/model.safetensors"]
    assert first is None and then is not None and then.startswith("bytes=") and then.endswith("-")
    assert 0 < int(then.removeprefix("bytes=").removesuffix("-")) <= len(weights) // 2  # from what had arrived, not from 0
    assert blob_of(tmp_path, caption, weights).read_bytes() == weights


def test_an_interrupted_pull_keeps_its_finished_files_and_fetches_only_the_rest_next_time(tmp_path: Path) -> None:
    repositories, loads = cpu_profile_repositories()
    caption = model_id_for("caption", Settings(profile=Profile.cpu)) or ""
    broken = f"{caption}/model.safetensors"
    with StandInHub(repositories, failing={broken}) as hub:
        stopped = fabula("models", "pull", "cpu", home=tmp_path, HF_ENDPOINT=hub.url)
        finished_first = [what for what in hub.downloads() if what != broken]
        hub.failing.clear()
        hub.requests.clear()
        again = fabula("models", "pull", "cpu", home=tmp_path, HF_ENDPOINT=hub.url)

    assert stopped.returncode == 2 and "HTTP 500" in stopped.stderr, stopped.stderr[-3000:]
    assert again.returncode == 0, again.stderr[-3000:]
    assert finished_first and not set(finished_first) & set(hub.downloads())
    assert sorted(hub.downloads()) == sorted(loads - set(finished_first))


# ---- choosing at the first run ---------------------------------------------------------------------------------------
NO_WEIGHTS = ProfileChoice(profile=Profile.offline, reason="no real weights here", automatic=True)
A_LAPTOP = Machine(gpus=[], memory_gib=32.0)


def never_pull(profile: Profile, environment: object) -> bool:
    raise AssertionError(f"nothing is fetched, yet the {profile.value} profile was")


def test_a_hub_that_refuses_connections_means_the_offline_profile_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        said: list[str] = []
        choice = first_run_profile(NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=never_pull, say=said.append, machine=A_LAPTOP, launched={})

    assert choice.profile == Profile.offline
    assert said == [choice.line()]
    assert f"the model hub at http://127.0.0.1:{port} could not be reached" in said[0] and "Connection refused" in said[0]


def test_a_hub_that_never_answers_means_the_offline_profile_after_the_short_wait(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever reads or answers them
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        said: list[str] = []
        choice = first_run_profile(
            NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=never_pull, say=said.append, machine=A_LAPTOP, launched={}, timeout_s=0.5,
        )

    assert choice.profile == Profile.offline
    assert said == [choice.line()] and "did not answer within 0.5 s" in said[0]


def test_a_shell_that_keeps_the_hub_offline_means_no_fetch(tmp_path: Path) -> None:
    said: list[str] = []

    choice = first_run_profile(
        NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=never_pull, say=said.append, machine=A_LAPTOP, launched={"HF_HUB_OFFLINE": "1"},
    )

    assert choice.profile == Profile.offline and "HF_HUB_OFFLINE=1" in said[0]


def test_a_machine_short_of_memory_for_the_cpu_profile_fetches_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    small = Machine(gpus=[], memory_gib=8.0)

    choice = first_run_profile(NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=never_pull, say=said.append, machine=small, launched={})

    assert choice == NO_WEIGHTS and said == [NO_WEIGHTS.line()]


def test_a_gpu_the_plan_fits_fetches_the_gpu_profile_with_the_hub_switched_on_for_the_pull_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    asked: list[tuple[Profile, dict[str, str]]] = []

    def pull(profile: Profile, environment: object) -> bool:
        asked.append((profile, dict(environment)))  # type: ignore[call-overload]
        return False  # as if the download stopped

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what `fabula` sets for itself
    said: list[str] = []
    with StandInHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        one_h100 = Machine(gpus=[GpuInfo(index=0, name="H100", total_gib=80)], memory_gib=128.0)
        choice = first_run_profile(NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=pull, say=said.append, machine=one_h100, launched={})

    assert [profile for profile, _ in asked] == [Profile.gpu]
    assert "HF_HUB_OFFLINE" not in asked[0][1]  # the shell did not set it, so the pull runs with the hub on
    assert said[0].startswith("Profile: gpu (fits this machine: the gpu profile's plan fits these GPUs; its weights are not here yet")
    assert f"so they come from {hub.url} first" in said[0]
    assert choice.profile == Profile.offline and said[1] == choice.line() and "did not finish" in said[1]


def test_gpus_the_gpu_profile_fits_only_with_other_settings_fetch_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    one_24gb = Machine(gpus=[GpuInfo(index=0, name="RTX 4090", total_gib=24)], memory_gib=64.0)

    choice = first_run_profile(NO_WEIGHTS, Settings(cache_dir=tmp_path), pull=never_pull, say=said.append, machine=one_24gb, launched={})

    assert choice.profile == Profile.offline and "only with other settings" in said[0] and "fabula doctor" in said[0]


def fits_the_cpu_profile() -> bool:
    return machine_fit(Settings(), Machine(gpus=[], memory_gib=memory_gib()))[0] == Profile.cpu  # with the GPUs hidden, as `fabula` runs here


@pytest.mark.skipif(not fits_the_cpu_profile(), reason="this machine has too little memory for the cpu profile, so `fabula up` fetches nothing")
def test_the_first_run_of_up_fetches_the_profile_that_fits_and_runs_it(tmp_path: Path, taken_port: int) -> None:
    repositories, loads = cpu_profile_repositories()
    with StandInHub(repositories) as hub:
        first = fabula("up", "--port", str(taken_port), home=tmp_path, HF_ENDPOINT=hub.url)
        asked = len(hub.requests)
        second = fabula("up", "--port", str(taken_port), home=tmp_path, HF_ENDPOINT=hub.url)

    assert first.returncode == 2 and f"Port {taken_port}" in first.stderr, first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"Profile: cpu (fits this machine: no CUDA GPU is visible; its weights are not here yet, so they come from {hub.url}")
    assert not [line for line in lines if line.startswith("Profile: ")][1:]  # the pull's own profile line is not repeated
    assert f"The cpu profile downloads {gigabytes(loaded_bytes(repositories, loads))}" in first.stdout
    assert "100%" in first.stderr
    assert sorted(hub.downloads()) == sorted(loads)
    # The next start finds the weights and asks the hub nothing.
    assert second.stdout.splitlines()[0] == "Profile: cpu (the cpu profile's weights are here)"
    assert len(hub.requests) == asked


def test_a_named_profile_or_no_fetch_never_asks_the_hub(tmp_path: Path, taken_port: int) -> None:
    repositories, _ = cpu_profile_repositories()
    with StandInHub(repositories) as hub:
        named = fabula("up", "--profile", "offline", "--port", str(taken_port), home=tmp_path, HF_ENDPOINT=hub.url)
        unfetched = fabula("up", "--no-fetch", "--port", str(taken_port), home=tmp_path, HF_ENDPOINT=hub.url)

    assert named.returncode == 2 and unfetched.returncode == 2, named.stderr[-2000:] + unfetched.stderr[-2000:]
    assert named.stdout.splitlines()[0] == "Profile: offline (named on the command line)"
    assert unfetched.stdout.splitlines()[0].startswith(("Profile: offline (no real weights here", "Profile: tiny (no real weights here"))
    assert hub.requests == []


# ---- one profile everywhere -----------------------------------------------------------------------------------------
def test_doctor_models_status_and_the_help_agree_with_the_profile_up_runs(tmp_path: Path) -> None:
    doctor = fabula("doctor", home=tmp_path)
    status = fabula("models", "status", home=tmp_path)
    named = fabula("models", "status", "--profile", "tiny", home=tmp_path)
    overall = fabula("--help", home=tmp_path)
    story = fabula("story", "--help", home=tmp_path)

    assert doctor.returncode == status.returncode == 0, doctor.stderr[-2000:] + status.stderr[-2000:]
    chosen = doctor.stdout.splitlines()[0]
    assert chosen.startswith("Profile: ") and status.stdout.splitlines()[0] == chosen
    profile = chosen.split()[1]
    assert f"Models for the {profile} profile:" in status.stdout and f"Plan for the {profile} profile:" in doctor.stdout
    assert named.stdout.splitlines()[:2] == ["Profile: tiny (named on the command line)", "Models for the tiny profile:"]
    assert "caption, illustrate, llm and narrate services" in " ".join(overall.stdout.split())
    assert "auto: the best one whose weights are on this machine (the default, unless FABULA_PROFILE is set)" in " ".join(story.stdout.split())

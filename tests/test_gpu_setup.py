"""GPU planning, model pulls, the doctor and the deployment files, on a machine without a GPU or network.

Pulls run in a child process, as `fabula models pull` does, because the hub client reads HF_HOME,
HF_ENDPOINT and HF_HUB_OFFLINE once at import. The one hub that answers is a small fake on loopback: the
hub is outside the product, so its HTTP API is the thing to stand in for.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpu_setup.assignment import GpuInfo, GpuPlanError, plan_assignment, plan_for_settings
from gpu_setup.doctor import collect_gpus, doctor_report, format_report
from gpu_setup.hub_errors import ModelPullFailed
from gpu_setup.hub_files import select_files
from gpu_setup.memory import LLAVA_7B, LLAVA_7B_4BIT
from gpu_setup.models import model_status, pull_models
from shared.errors import InvalidRequest, ModelUnavailable
from shared.server_thread import ServerThread
from shared.settings import Profile, Settings

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 30  # a pull that has not failed by then is hanging, which is the bug these tests look for


def gpus(*sizes_gib: float) -> list[GpuInfo]:
    return [GpuInfo(index=index, name=f"Test GPU {size:g} GiB", total_gib=size) for index, size in enumerate(sizes_gib)]


# ---- GPU assignment --------------------------------------------------------------------------------------------
def test_one_80gb_gpu_holds_all_three_full_size_services() -> None:
    plan = plan_assignment(gpus(79.2), Profile.gpu)

    assert plan.fits, plan.reason
    assert plan.devices() == {"caption": "cuda:0", "illustrate": "cuda:0", "llm": "cuda:0"}
    assert plan.changes == {}
    assert [p.option for p in plan.placements] == ["LLaVA-1.5-13B, fp16", "SDXL base + refiner, fp16", "Qwen2.5-7B-Instruct, bf16"]
    assert plan.gpus[0].planned_gib <= plan.gpus[0].usable_gib


def test_one_24gb_gpu_fits_only_with_offload_and_a_4bit_llava() -> None:
    without = plan_assignment(gpus(24), Profile.gpu)

    assert not without.fits
    assert "FABULA_OFFLOAD=true" in without.reason and LLAVA_7B_4BIT in without.reason
    assert "GiB" in without.reason
    with pytest.raises(GpuPlanError):
        without.devices()
    assert without.alternative is not None and without.alternative.fits

    offloaded = plan_assignment(gpus(24), Profile.gpu, offload=True)

    assert offloaded.fits, offloaded.reason
    assert offloaded.devices() == {"caption": "cuda:0", "illustrate": "cuda:0", "llm": "cuda:0"}
    assert offloaded.changes["FABULA_CAPTION_MODEL"] == LLAVA_7B_4BIT
    assert "FABULA_OFFLOAD" not in offloaded.changes  # it is already on
    assert any("bitsandbytes" in note for note in offloaded.notes)


def test_three_24gb_gpus_run_one_service_each() -> None:
    plan = plan_assignment(gpus(24, 24, 24), Profile.gpu)

    assert plan.fits, plan.reason
    assert plan.devices() == {"caption": "cuda:0", "illustrate": "cuda:1", "llm": "cuda:2"}
    assert plan.environment["FABULA_CAPTION_GPU"] == "0"
    assert plan.environment["FABULA_ILLUSTRATE_GPU"] == "1"
    assert plan.environment["FABULA_LLM_GPU"] == "2"
    # LLaVA-13B in fp16 (~28 GiB) fits no 24 GB card: the plan says which LLaVA to set instead.
    assert plan.changes == {"FABULA_CAPTION_MODEL": LLAVA_7B}


def test_a_model_already_configured_is_not_asked_for_again() -> None:
    plan = plan_assignment(gpus(24, 24, 24), Profile.gpu, configured={"caption": LLAVA_7B})

    assert plan.fits and plan.changes == {}


def test_two_gpus_give_the_illustrate_service_a_gpu_of_its_own() -> None:
    plan = plan_assignment(gpus(79.2, 79.2), Profile.gpu)

    assert plan.fits and plan.changes == {}
    devices = plan.devices()
    assert devices["caption"] == devices["llm"] != devices["illustrate"]
    assert all(load.services for load in plan.gpus)


def test_two_48gb_gpus_split_the_full_size_models_by_memory() -> None:
    plan = plan_assignment(gpus(44.99, 44.99), Profile.gpu)

    assert plan.fits and plan.changes == {}
    devices = plan.devices()
    assert devices["caption"] != devices["illustrate"] == devices["llm"]
    assert all(load.planned_gib <= load.usable_gib for load in plan.gpus)


def test_an_llm_served_elsewhere_frees_its_share() -> None:
    local = plan_assignment(gpus(47.99), Profile.gpu)
    hosted = plan_assignment(gpus(47.99), Profile.gpu, external_llm=True)

    assert local.changes  # with the LLM on the GPU, something has to shrink
    assert hosted.fits and hosted.changes == {}
    assert hosted.devices() == {"caption": "cuda:0", "illustrate": "cuda:0"}


def test_plan_for_settings_reads_offload_models_and_llm_endpoint() -> None:
    settings = Settings(profile=Profile.gpu, offload=True, caption_model=LLAVA_7B_4BIT, llm_base_url="https://llm.example/v1")

    plan = plan_for_settings(gpus(20), settings)

    assert plan.fits, plan.reason
    assert plan.changes == {}
    assert set(plan.devices()) == {"caption", "illustrate"}


def test_a_small_gpu_is_refused_with_the_numbers() -> None:
    plan = plan_assignment(gpus(8), Profile.gpu, offload=True)

    assert not plan.fits
    assert "8.0 GiB" in plan.reason and "cpu profile" in plan.reason


def test_no_gpu_means_the_cpu_profile() -> None:
    plan = plan_assignment([], Profile.gpu)

    assert not plan.fits
    assert "No CUDA GPU" in plan.reason and "cpu profile" in plan.reason
    assert plan_assignment([], Profile.cpu).devices() == {"caption": "cpu", "illustrate": "cpu", "llm": "cpu"}
    assert plan_assignment(gpus(80), Profile.tiny).devices() == {"caption": "cpu", "illustrate": "cpu", "llm": "cpu"}


# ---- which files a pull takes ------------------------------------------------------------------------------------
SDXL_BASE_FILES = [
    "model_index.json", "sd_xl_base_1.0.safetensors", "sd_xl_offset_example-lora_1.0.safetensors",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "text_encoder/model.onnx", "text_encoder/openvino_model.bin", "text_encoder/flax_model.msgpack",
    "text_encoder_2/config.json", "text_encoder_2/model.safetensors", "text_encoder_2/model.fp16.safetensors",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
    "tokenizer_2/merges.txt", "tokenizer_2/special_tokens_map.json", "tokenizer_2/tokenizer_config.json", "tokenizer_2/vocab.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_flax_model.msgpack", "unet/model.onnx", "unet/model.onnx_data",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae_1_0/config.json", "vae_1_0/diffusion_pytorch_model.safetensors",
    "vae_decoder/config.json", "vae_decoder/model.onnx", "vae_encoder/config.json", "vae_encoder/model.onnx",
]
SDXL_BASE_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0", "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def test_sdxl_pull_takes_fp16_component_weights_and_nothing_else() -> None:
    chosen = select_files(SDXL_BASE_FILES, model_index=SDXL_BASE_INDEX, variant="fp16")

    weights = [name for name in chosen if name.endswith(".safetensors")]
    assert weights == [
        "text_encoder/model.fp16.safetensors", "text_encoder_2/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert "model_index.json" in chosen and "tokenizer_2/merges.txt" in chosen and "scheduler/scheduler_config.json" in chosen
    assert not any(name.startswith(("vae_1_0/", "vae_decoder/", "vae_encoder/")) for name in chosen)


def test_cpu_profile_takes_the_default_weights_and_the_refiner_borrows_from_the_base() -> None:
    default = select_files(SDXL_BASE_FILES, model_index=SDXL_BASE_INDEX, variant=None)
    assert "unet/diffusion_pytorch_model.safetensors" in default
    assert not any(".fp16." in name for name in default)

    refiner = select_files(SDXL_BASE_FILES, model_index=SDXL_BASE_INDEX, variant="fp16", skip_components=("text_encoder_2", "vae"))
    assert "text_encoder_2/config.json" in refiner and "vae/config.json" in refiner
    assert not any(name.startswith(("text_encoder_2/", "vae/")) and name.endswith(".safetensors") for name in refiner)


def test_transformers_pull_takes_safetensors_shards_not_bin_or_flax() -> None:
    files = [
        "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json", "flax_model.msgpack", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
        "chat_template.jinja", "preprocessor_config.json", "README.md", ".gitattributes", "onnx/model.onnx", "consolidated.safetensors",
    ]

    assert select_files(files) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
        "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
    ]


# ---- pulling ------------------------------------------------------------------------------------------------------
PULL_SCRIPT = """
import json, sys
from gpu_setup.hub_errors import ModelPullFailed
from gpu_setup.models import model_status, pull_models
from shared.profiles import resolve_model_path
from shared.settings import Profile, Settings

settings = Settings()
result = {}
if sys.argv[1] == "pull":
    try:
        result["pulled"] = [item.model_dump() for item in pull_models(settings.profile, settings, progress=lambda line: None)]
    except ModelPullFailed as exc:
        result["error"] = {"type": exc.error_type, "reason": exc.reason, "message": exc.message, "param": exc.param}
if "error" not in result:
    result["status"] = [item.model_dump() for item in model_status(settings)]
print(json.dumps(result))
"""


def run_pull(action: str, home: Path, **environment: str) -> dict:
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("FABULA_", "HF_", "TRANSFORMERS_")) and not key.lower().endswith("_proxy")
    }
    env.update({"HF_HOME": str(home / "hf"), "FABULA_CACHE_DIR": str(home / "fabula"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    env.update(environment)
    finished = subprocess.run(
        [sys.executable, "-c", PULL_SCRIPT, action], env=env, cwd=home, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_pull_fails_fast_with_one_clear_message_when_the_hub_is_unreachable(tmp_path: Path) -> None:
    answer = run_pull("pull", tmp_path, FABULA_PROFILE="cpu", HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="0")

    error = answer["error"]
    assert error["type"] == "model_pull_failed" and error["reason"] == "unreachable"
    message = error["message"]
    assert "http://127.0.0.1:9" in message and "llava-hf/llava-interleave-qwen-0.5b-hf" in message
    for advice in ("proxy", "HF_ENDPOINT", "FABULA_CAPTION_MODEL=/path/to/folder", "HF_HOME"):
        assert advice in message
    assert not any((tmp_path / "hf").rglob("*.safetensors"))


def test_pull_explains_a_hub_name_that_does_not_resolve(tmp_path: Path) -> None:
    answer = run_pull("pull", tmp_path, FABULA_PROFILE="gpu", HF_ENDPOINT="http://fabula-hub.invalid", HF_HUB_OFFLINE="0")

    assert answer["error"]["reason"] == "unreachable"
    assert "could not be reached" in answer["error"]["message"] and "llava-hf/llava-1.5-13b-hf" in answer["error"]["message"]


def test_pull_gives_up_on_a_hub_that_never_answers(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel accepts connections; nobody ever reads or answers them
        port = listener.getsockname()[1]
        answer = run_pull(
            "pull", tmp_path, FABULA_PROFILE="cpu", HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_OFFLINE="0", HF_HUB_ETAG_TIMEOUT="1"
        )

    assert answer["error"]["reason"] == "unreachable"
    assert "did not answer within 1 s" in answer["error"]["message"]


def test_pull_says_how_to_switch_offline_mode_off(tmp_path: Path) -> None:
    answer = run_pull("pull", tmp_path, FABULA_PROFILE="gpu", HF_HUB_OFFLINE="1")

    assert answer["error"]["reason"] == "offline"
    assert "HF_HUB_OFFLINE" in answer["error"]["message"] and "unset HF_HUB_OFFLINE" in answer["error"]["message"]
    assert "fabula models pull gpu" in answer["error"]["message"]


def test_offline_mode_in_this_process_raises_model_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(profile=Profile.cpu, cache_dir=tmp_path)

    with pytest.raises(ModelUnavailable) as raised:
        pull_models(Profile.cpu, settings, progress=lambda line: None)

    assert isinstance(raised.value, ModelPullFailed) and raised.value.param == "HF_HUB_OFFLINE"


def test_the_tiny_profile_needs_no_pull(tmp_path: Path) -> None:
    said: list[str] = []

    pulled = pull_models(Profile.tiny, Settings(cache_dir=tmp_path), progress=said.append)

    assert [item.action for item in pulled] == ["built_locally"] * 4
    assert any("needs no download" in line for line in said)


def _blob(text: str) -> bytes:
    return text.encode() * 3


FAKE_REPOSITORIES: dict[str, dict[str, bytes]] = {
    "fabula-test/sdxl-base": {
        **{name: _blob(name) for name in SDXL_BASE_FILES if name != "model_index.json"},
        "model_index.json": json.dumps(SDXL_BASE_INDEX).encode(),
    },
    "fabula-test/sdxl-refiner": {
        **{name: _blob(name) for name in SDXL_BASE_FILES if not name.startswith(("text_encoder/", "tokenizer/", "model_index"))},
        "model_index.json": json.dumps({**SDXL_BASE_INDEX, "text_encoder": [None, None], "tokenizer": [None, None]}).encode(),
    },
    "fabula-test/llava": {
        name: _blob(name)
        for name in (
            "config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "chat_template.json",
            "preprocessor_config.json", "README.md",
        )
    },
    "fabula-test/chat": {
        name: _blob(name) for name in ("config.json", "model.safetensors", "flax_model.msgpack", "tokenizer.json", "merges.txt", "vocab.json")
    },
}
FAKE_REPOSITORIES["fabula-test/huge"] = dict(FAKE_REPOSITORIES["fabula-test/chat"])
FAKE_REPOSITORIES["fabula-test/chat-gguf"] = {name: _blob(name) for name in ("chat-q4_k_m.gguf", "chat-q8_0.gguf", "README.md")}
REPORTED_SIZES = {("fabula-test/huge", "model.safetensors"): 10**16}  # what the hub says, not what it serves
GATED = {"fabula-test/gated"}
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def missing_repository() -> JSONResponse:
    return JSONResponse({"error": "Repository not found"}, status_code=404, headers={"X-Error-Code": "RepoNotFound"})


def hub_model_info(repository_id: str) -> Response:
    """The hub's answer to `model_info`: 403 for a gated repository, 404 for an unknown one, else its files."""
    if repository_id in GATED:
        return JSONResponse({"error": "Access to this model is restricted."}, status_code=403, headers={"X-Error-Code": "GatedRepo"})
    files = FAKE_REPOSITORIES.get(repository_id)
    if files is None:
        return missing_repository()
    siblings = [
        {"rfilename": path, "size": REPORTED_SIZES.get((repository_id, path), len(data)), "blobId": hashlib.sha1(data).hexdigest()}
        for path, data in files.items()
    ]
    return JSONResponse({"id": repository_id, "modelId": repository_id, "sha": FAKE_COMMIT, "private": False, "siblings": siblings})


def fake_hub() -> FastAPI:
    """The parts of the Hugging Face Hub HTTP API that `snapshot_download` and `model_info` use."""
    app = FastAPI()
    served: list[str] = []
    app.state.served = served

    def repository(org: str, name: str) -> dict[str, bytes] | None:
        return FAKE_REPOSITORIES.get(f"{org}/{name}")

    @app.get("/api/models/{org}/{name}")
    @app.get("/api/models/{org}/{name}/revision/{revision}")
    def model_info(org: str, name: str, revision: str = "main") -> Response:
        return hub_model_info(f"{org}/{name}")

    @app.get("/api/models/{org}/{name}/tree/{revision}")
    def tree(org: str, name: str, revision: str) -> Response:
        files = repository(org, name)
        if files is None:
            return missing_repository()
        return JSONResponse([{"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()} for path, data in files.items()])

    @app.api_route("/{org}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    def resolve(org: str, name: str, revision: str, path: str, request: Request) -> Response:
        files = repository(org, name)
        if files is None or path not in files:
            return JSONResponse({"error": "Entry not found"}, status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        data = files[path]
        headers = {"X-Repo-Commit": FAKE_COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"', "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        served.append(f"{org}/{name}/{path}")
        return Response(content=data, headers=headers, media_type="application/octet-stream")

    return app


def local_adapter(folder: Path) -> Path:
    """A likeness adapter already in a local folder (the files `fabula models pull` would fetch, as stand-ins)."""
    adapter = folder / "adapter"
    for name in ("sdxl_models/ip-adapter_sdxl_vit-h.safetensors", "models/image_encoder/config.json", "models/image_encoder/model.safetensors"):
        (adapter / name).parent.mkdir(parents=True, exist_ok=True)
        (adapter / name).write_bytes(b"{}")
    return adapter


def test_pull_downloads_only_what_loads_and_the_offline_lookup_finds_it(tmp_path: Path) -> None:
    app = fake_hub()
    # The likeness adapter is already in a local folder and the classifier is off: this test is about the four models.
    adapter = local_adapter(tmp_path)
    models = {
        "FABULA_PROFILE": "gpu", "FABULA_CAPTION_MODEL": "fabula-test/llava", "FABULA_ILLUSTRATE_MODEL": "fabula-test/sdxl-base",
        "FABULA_REFINER_MODEL": "fabula-test/sdxl-refiner", "FABULA_LLM_MODEL": "fabula-test/chat",
        "FABULA_LIKENESS_MODEL": str(adapter), "FABULA_SAFETY_CHECKER": "false", "FABULA_UPSCALE_MODEL": "lanczos",
    }
    with ServerThread(app) as hub:
        answer = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **models)
        assert "error" not in answer, answer
        again = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **models)

    assert [item["action"] for item in answer["pulled"]] == ["downloaded"] * 4 + ["up_to_date"]
    assert [item["action"] for item in again["pulled"]] == ["up_to_date"] * 5
    assert answer["pulled"][-1]["role"] == "likeness" and answer["pulled"][-1]["path"] == str(adapter)
    served = set(app.state.served)
    assert "fabula-test/sdxl-base/unet/diffusion_pytorch_model.fp16.safetensors" in served
    assert "fabula-test/llava/model.safetensors" in served and "fabula-test/chat/merges.txt" in served
    never = (
        "unet/diffusion_pytorch_model.safetensors", "sd_xl_base_1.0.safetensors", "unet/model.onnx", "pytorch_model.bin", "flax_model.msgpack", "README.md",
    )
    assert not [path for path in served if path.endswith(never)]
    assert not [path for path in served if path.startswith("fabula-test/sdxl-refiner/") and path.endswith(".safetensors") and "/text_encoder_2/" in path]

    # A fresh process with the network off, like a service at start-up, finds every model.
    offline = run_pull("status", tmp_path, HF_HUB_OFFLINE="1", **models)
    assert [(item["role"], item["state"]) for item in offline["status"]] == [
        ("caption", "present"), ("illustrate", "present"), ("refiner", "present"), ("llm", "present"), ("likeness", "present")
    ]
    base = Path(offline["status"][1]["path"])
    assert (base / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert (base / "model_index.json").is_file()


def test_pull_names_the_setting_the_token_or_the_disk_when_those_are_the_problem(tmp_path: Path) -> None:
    with ServerThread(fake_hub()) as hub:
        def pull(model_id: str) -> dict:
            answer = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", FABULA_PROFILE="cpu", FABULA_CAPTION_MODEL=model_id)
            return answer["error"]

        missing, gated, huge = pull("fabula-test/no-such-model"), pull("fabula-test/gated"), pull("fabula-test/huge")

    assert missing["reason"] == "not_found" and missing["param"] == "FABULA_CAPTION_MODEL"
    assert "fabula-test/no-such-model" in missing["message"]
    assert gated["reason"] == "gated" and "HF_TOKEN" in gated["message"] and "licence" in gated["message"]
    assert huge["reason"] == "disk" and "HF_HOME" in huge["message"] and "GB are free" in huge["message"]
    assert not any((tmp_path / "hf").rglob("model.safetensors"))


def test_pull_rejects_an_unknown_role(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="captions"):
        pull_models(Profile.cpu, Settings(cache_dir=tmp_path), roles=["captions"])


# ---- model status ---------------------------------------------------------------------------------------------------
def test_model_status_marks_tiny_models_as_built_locally(tmp_path: Path) -> None:
    statuses = model_status(Settings(profile=Profile.tiny, cache_dir=tmp_path))

    assert [status.state for status in statuses] == ["built_on_first_use"] * 4
    assert all("built locally on first use" in status.describe() for status in statuses)


def test_model_status_marks_cpu_models_as_missing_with_the_pull_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    statuses = {status.role: status for status in model_status(Settings(profile=Profile.cpu, cache_dir=tmp_path))}

    for role in ("caption", "illustrate", "llm"):
        assert statuses[role].state == "missing" and not statuses[role].present
        assert "fabula models pull cpu" in statuses[role].describe()
    assert statuses["caption"].model_id == "llava-hf/llava-interleave-qwen-0.5b-hf"
    assert statuses["refiner"].state == "not_used"


# ---- doctor ---------------------------------------------------------------------------------------------------------
def test_collect_gpus_reports_what_torch_sees() -> None:
    import torch

    found = collect_gpus()

    assert len(found) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert all(gpu.total_gib > 0 and gpu.free_gib is not None for gpu in found)


def test_doctor_on_a_machine_without_gpu_says_so_and_recommends_a_profile(tmp_path: Path) -> None:
    report = doctor_report(Settings(profile=Profile.gpu, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data"), gpus=[])
    text = format_report(report)

    assert report.gpus == [] and not report.assignment.fits
    assert report.recommended_profile in (Profile.cpu, Profile.offline)
    assert "No CUDA GPU" in report.recommendation
    assert "GPUs: none visible" in text and f"Fits this machine: the {report.recommended_profile.value} profile" in text
    assert [status.role for status in report.models] == ["caption", "illustrate", "refiner", "llm", "likeness", "safety", "upscale"]
    assert report.disks and report.disks[0].free_gb > 0


def test_doctor_shows_the_plan_for_the_gpus_it_is_given(tmp_path: Path) -> None:
    report = doctor_report(Settings(profile=Profile.tiny, cache_dir=tmp_path), gpus=gpus(24, 24, 24))
    text = format_report(report)

    assert report.recommended_profile == Profile.gpu
    assert report.gpu_assignment is not None and report.gpu_assignment.fits
    assert "Plan for the gpu profile" in text and "cuda:2" in text and f"FABULA_CAPTION_MODEL={LLAVA_7B}" in text


# ---- deployment files -----------------------------------------------------------------------------------------------
def test_compose_pins_each_model_service_to_a_gpu_and_waits_for_health() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    always_on = {name: service for name, service in services.items() if "profiles" not in service}

    assert set(always_on) == {"caption", "illustrate", "llm", "narrate", "web"}
    for name, service in always_on.items():
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert "models:/models" in service["volumes"]
    pins = {}
    for name, port in (("caption", "8101"), ("illustrate", "8102"), ("llm", "8103")):
        service = services[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        pins[name] = device["device_ids"][0]
        assert service["environment"]["HF_HUB_OFFLINE"] == "1"
        assert port in service["command"] and f":{port}/readyz" in service["healthcheck"]["test"][-1]
    assert pins == {"caption": "${FABULA_CAPTION_GPU:-0}", "illustrate": "${FABULA_ILLUSTRATE_GPU:-1}", "llm": "${FABULA_LLM_GPU:-2}"}
    web = services["web"]
    assert web["depends_on"] == {name: {"condition": "service_healthy"} for name in ("caption", "illustrate", "llm", "narrate")}
    assert web["environment"]["FABULA_NARRATE_URL"] == "http://narrate:8104"
    assert web["environment"]["FABULA_CAPTION_URL"] == "http://caption:8101"
    assert web["environment"]["FABULA_ILLUSTRATE_URL"] == "http://illustrate:8102"
    assert web["environment"]["FABULA_LLM_URL"] == "http://llm:8103"
    assert services["models"]["environment"]["HF_HUB_OFFLINE"] == "0"
    assert set(compose["volumes"]) == {"models", "data", "postgres", "redis"}


def test_compose_scale_profile_adds_the_stores_a_migration_and_two_workers_that_wait_for_them() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    scale = {name: service for name, service in services.items() if "scale" in service.get("profiles", [])}
    fields = set(Settings.model_fields)

    assert set(scale) == {"postgres", "redis", "migrate", "worker"}
    assert all(service["profiles"] == ["scale"] for service in scale.values())
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "redis:/data" in services["redis"]["volumes"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    worker = services["worker"]
    assert worker["command"][:2] == ["worker", "--profile"] and "--concurrency" in worker["command"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        **{name: {"condition": "service_healthy"} for name in ("redis", "caption", "illustrate", "llm", "narrate")},
    }
    assert ":8110/healthz" in worker["healthcheck"]["test"][-1]
    assert ":8104/readyz" in services["narrate"]["healthcheck"]["test"][-1] and "8104" in services["narrate"]["command"]
    # The workers write the books the web app serves: one `data` volume, mounted where both look.
    assert "data:/data" in worker["volumes"] and "data:/data" in services["web"]["volumes"]
    assert worker["environment"]["FABULA_DATA_DIR"] == services["web"]["environment"]["FABULA_DATA_DIR"] == "/data"
    for name in ("migrate", "worker"):
        environment = services[name]["environment"]
        assert "@postgres:5432/fabula" in environment["FABULA_DATABASE_URL"], name
        assert environment["FABULA_DATABASE_URL"].startswith("${FABULA_DATABASE_URL:-postgresql+psycopg://"), name
        assert environment["FABULA_BROKER_URL"] == "${FABULA_BROKER_URL:-redis://redis:6379/0}", name
    for name, port in (("caption", "8101"), ("illustrate", "8102"), ("llm", "8103"), ("narrate", "8104")):
        assert worker["environment"][f"FABULA_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert port in services[name]["command"]
    # The web app reads the two URLs from `.env`, the same place the workers' defaults give way to.
    header = (ROOT / "docker-compose.yml").read_text().split("\nservices:")[0]
    assert "COMPOSE_PROFILES=scale" in header and "FABULA_DATABASE_URL=postgresql+psycopg://" in header and "FABULA_BROKER_URL=redis://redis:6379/0" in header
    for name, service in services.items():
        unknown = [key for key in service.get("environment", {}) if key.startswith("FABULA_") and key.removeprefix("FABULA_").lower() not in fields]
        assert not unknown, f"{name}: not fields of Settings: {unknown}"


def test_dockerfile_builds_one_image_with_torch_fonts_and_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = ("shared", "services", "webapp", "gpu_setup")

    assert "\nFROM python:3.11-slim\n" in dockerfile
    for needed in ("fonts-noto-core", "fonts-nanum", "poppler-utils", "pip install ${TORCH_INDEX_URL:+", "pip install .", 'ENTRYPOINT ["fabula"]'):
        assert needed in dockerfile
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
        assert (ROOT / package / "__init__.py").is_file()
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ".venv" in ignored and ".env" in ignored and "README.md" not in ignored


# ---- the command line tells the truth -------------------------------------------------------------------------------
def _fabula(*args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FABULA_", "HF_", "TRANSFORMERS_"))}
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "webapp.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_models_status_lists_the_profile_named_on_the_command_line(tmp_path: Path) -> None:
    finished = _fabula("models", "status", "cpu", FABULA_PROFILE="tiny", FABULA_CACHE_DIR=str(tmp_path), HF_HOME=str(tmp_path / "hf"))

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Models for the cpu profile" in finished.stdout
    assert "llava-hf/llava-interleave-qwen-0.5b-hf" in finished.stdout and "fabula models pull cpu" in finished.stdout
    assert "tiny:" not in finished.stdout


def test_model_status_finds_the_tiny_refiner_the_illustration_service_built(tmp_path: Path) -> None:
    from services.illustrate.tiny import build_tiny_sdxl
    from shared.profiles import tiny_dir

    settings = Settings(profile=Profile.tiny, cache_dir=tmp_path)
    build_tiny_sdxl(tiny_dir("illustrate", settings))
    statuses = {status.role: status for status in model_status(settings)}

    assert statuses["illustrate"].state == "present" and statuses["refiner"].state == "present"
    assert Path(statuses["refiner"].path, "model_index.json").is_file()
    assert " MB" in statuses["refiner"].describe()


def test_doctor_does_not_blame_the_shell_for_the_offline_switch_fabula_sets_itself(tmp_path: Path) -> None:
    finished = _fabula("doctor", "--profile", "tiny", FABULA_CACHE_DIR=str(tmp_path), HF_HOME=str(tmp_path / "hf"))

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Fabula serves offline" in finished.stdout
    assert "is set in this environment" not in finished.stdout


def test_doctor_says_when_the_shell_keeps_a_pull_offline(tmp_path: Path) -> None:
    settings = Settings(profile=Profile.tiny, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")

    blocked = format_report(doctor_report(settings, gpus=[], environment={"TRANSFORMERS_OFFLINE": "1"}))
    switched_back_on = doctor_report(settings, gpus=[], environment={"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"})

    assert "TRANSFORMERS_OFFLINE=1 is set in this environment" in blocked and "unset TRANSFORMERS_OFFLINE" in blocked
    assert switched_back_on.offline is None


def test_a_gguf_text_model_is_pulled_as_its_one_file_and_found_offline(tmp_path: Path) -> None:
    app = fake_hub()
    adapter = local_adapter(tmp_path)
    models = {
        "FABULA_PROFILE": "cpu", "FABULA_CAPTION_MODEL": "none", "FABULA_ILLUSTRATE_MODEL": "none", "FABULA_REFINER_MODEL": "none",
        "FABULA_LLM_MODEL": "fabula-test/chat-gguf/chat-q4_k_m.gguf", "FABULA_LIKENESS_MODEL": str(adapter), "FABULA_SAFETY_CHECKER": "false",
        "FABULA_UPSCALE_MODEL": "lanczos",
    }
    with ServerThread(app) as hub:
        answer = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **models)
        again = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **models)
        wrong = run_pull("pull", tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", **{**models, "FABULA_LLM_MODEL": "fabula-test/chat-gguf/nope.gguf"})
    llm = next(item for item in answer["pulled"] if item["role"] == "llm")
    assert llm["action"] == "downloaded" and llm["files"] == 1 and llm["path"].endswith("chat-q4_k_m.gguf")
    assert next(item for item in again["pulled"] if item["role"] == "llm")["action"] == "up_to_date"
    assert set(app.state.served) == {"fabula-test/chat-gguf/chat-q4_k_m.gguf"}
    assert wrong["error"]["param"] == "FABULA_LLM_MODEL" and "nope.gguf" in wrong["error"]["message"]
    offline = run_pull("status", tmp_path, HF_HUB_OFFLINE="1", **models)
    status = next(item for item in offline["status"] if item["role"] == "llm")
    assert status["state"] == "present" and "llama.cpp" in status["detail"]

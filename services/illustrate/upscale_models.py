"""Which upscaler a profile uses and where its weights are, without touching the network.

- tiny: a tiny random Real-ESRGAN-class stand-in built here (`tiny_upscaler`), loaded through spandrel;
- offline: the Lanczos filter (no model weights can be had offline; said in every response and in /readyz);
- cpu and gpu: Real-ESRGAN ×4 (RRDBNet, BSD-3-Clause), one hub file that `fabula models pull` fetches.
`FABULA_UPSCALE_MODEL` overrides the default: `lanczos`, `tiny`, a hub file written `owner/repo/file.pth`, or a
local .pth/.safetensors file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.illustrate.tiny_upscaler import build_tiny_upscaler
from shared.errors import ModelUnavailable
from shared.profiles import TINY, tiny_dir
from shared.settings import Profile, Settings

LANCZOS = "lanczos"
REAL_ESRGAN_X4 = "ai-forever/Real-ESRGAN/RealESRGAN_x4.pth"
SETTING = "FABULA_UPSCALE_MODEL"
DEFAULT_UPSCALERS: dict[Profile, str] = {
    Profile.tiny: TINY,
    Profile.offline: LANCZOS,
    Profile.cpu: REAL_ESRGAN_X4,
    Profile.gpu: REAL_ESRGAN_X4,
}


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str


def upscale_model_id(settings: Settings) -> str:
    configured = (settings.upscale_model or "").strip()
    return configured or DEFAULT_UPSCALERS[settings.profile]


def hub_file(model_id: str) -> HubFile | None:
    """`owner/repo/file.pth` → the hub repository and file; None for anything else (a local path, a keyword)."""
    if model_id in (TINY, LANCZOS) or Path(os.path.expanduser(model_id)).exists():
        return None
    owner, _, rest = model_id.partition("/")
    repo, _, filename = rest.partition("/")
    return HubFile(f"{owner}/{repo}", filename) if owner and repo and filename else None


def resolve_upscaler(settings: Settings) -> tuple[str, Path | None]:
    """(model id, weights file), the file None for the classical filter; raises `ModelUnavailable` saying what to
    download when a hub file is not in the local cache."""
    model_id = upscale_model_id(settings)
    if model_id == LANCZOS:
        return model_id, None
    if model_id == TINY:
        return model_id, build_tiny_upscaler(tiny_dir("upscale", settings))
    local = Path(os.path.expanduser(model_id))
    if local.is_file():
        return model_id, local
    found = _cached(model_id)
    if found is None:
        raise ModelUnavailable(
            f"The upscale model '{model_id}' is not on this machine. Download it with `fabula models pull "
            f"{settings.profile.value if settings.profile in (Profile.cpu, Profile.gpu) else 'cpu'}` where the hub can be reached, "
            f"or set {SETTING} to a local .pth/.safetensors file, or to `{LANCZOS}` for the classical filter.",
            param=SETTING,
        )
    return model_id, found


def _cached(model_id: str) -> Path | None:
    wanted = hub_file(model_id)
    if wanted is None:
        return None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(wanted.repo_id, wanted.filename)
    except HFValidationError:
        return None
    return Path(found) if isinstance(found, str) else None

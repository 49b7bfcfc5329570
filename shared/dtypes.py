"""One dtype policy for every model: which floating-point type a model runs in on a device.

fp32 on a CPU, where half-precision kernels are slow or missing. On a GPU, half precision (half the memory,
tensor cores): bf16 where the GPU computes it natively (compute capability 8.0 and up: A100, H100, RTX 30xx
and later), since its fp32-sized exponent does not overflow; fp16 on older GPUs. A model whose published
weights and numerics are fp16 (SDXL and its fp16 VAE handling) asks for fp16 first. `FABULA_MODEL_DTYPE`
(`auto`, `float32`, `bfloat16`, `float16`) overrides the choice for every service.
"""

from __future__ import annotations

import torch

from shared.errors import InvalidSetting
from shared.settings import Settings

DTYPE_SETTING = "FABULA_MODEL_DTYPE"
NATIVE_BF16_CAPABILITY = 8

_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def parse_dtype(name: str) -> torch.dtype | None:
    """`auto` (or empty) → None; a dtype's name → the dtype; anything else is a setting error naming the choices."""
    key = name.strip().lower().removeprefix("torch.")
    if key in ("", "auto"):
        return None
    if key not in _NAMES:
        raise InvalidSetting(
            f"{DTYPE_SETTING} must be auto, float32, bfloat16 or float16, not {name!r}.", param=DTYPE_SETTING
        )
    return _NAMES[key]


def gpu_has_native_bf16(device: str) -> bool:
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return major >= NATIVE_BF16_CAPABILITY


def choose_dtype(device: str, *, override: str | None = None, prefer: torch.dtype = torch.bfloat16) -> torch.dtype:
    """The dtype for a model on `device` (`cpu`, `cuda`, `cuda:N`); `prefer` is the half type to try first on a GPU."""
    chosen = parse_dtype(override) if override else None
    if chosen is not None:
        return chosen
    if not device.startswith("cuda"):
        return torch.float32
    if prefer == torch.bfloat16 and gpu_has_native_bf16(device):
        return torch.bfloat16
    return torch.float16


def model_dtype(device: str, settings: Settings, *, prefer: torch.dtype = torch.bfloat16) -> torch.dtype:
    """`choose_dtype` with the override read from the settings (FABULA_MODEL_DTYPE)."""
    override = settings.model_dtype
    return choose_dtype(device, override=override, prefer=prefer)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

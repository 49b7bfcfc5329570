"""How much GPU memory each service needs on the gpu profile, and the smaller variants to fall back on.

The figures are estimates from published parameter counts (see docs/models.md and each model card), not
measurements: weights at their stored precision, plus working memory (KV cache, activations, the VAE
decode) at the batch sizes Fabula plans for, plus the CUDA context each service process pays once.
They are deliberately round and a little generous; `fabula doctor` shows them so nobody has to guess.

Each service has a ladder of options, best first. The planner takes the best rung that fits; every rung
below the first names the settings that select it, so the plan can tell the operator what to set.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from shared.profiles import PROFILE_MODELS, SETTING_FOR_ROLE
from shared.settings import Profile

GIB = 2**30
SERVICES = ("caption", "illustrate", "llm")
CUDA_CONTEXT_GIB = 1.0  # CUDA context, cuBLAS workspace and allocator slack, once per service process

# Planned concurrency: two captions at once (one photo per book), SDXL micro-batches of up to eight images
# at 1024 x 1024 (FABULA_MAX_BATCH_SIZE), four LLM sequences of up to 8k tokens (plan and translations).
CAPTION_SEQUENCES = 2
CAPTION_TOKENS = 1200  # 576 image tokens + the prompt + up to 512 new tokens
LLM_SEQUENCES = 4
LLM_TOKENS = 8192


def weights_gib(billions_of_parameters: float, bytes_per_parameter: float) -> float:
    return billions_of_parameters * 1e9 * bytes_per_parameter / GIB


def kv_cache_gib(*, layers: int, kv_heads: int, head_dim: int, tokens: int, bytes_per_value: int = 2) -> float:
    """Keys and values for every layer, for `tokens` tokens in total across the batch."""
    return 2 * layers * kv_heads * head_dim * bytes_per_value * tokens / GIB


class ServiceOption(BaseModel):
    """One way to run a service: which models, how much memory, and at what cost in quality or speed."""

    model_config = ConfigDict(frozen=True)

    service: str
    label: str
    models: dict[str, str | None] = Field(description="Role -> model id this option loads (None: the role is off).")
    weights_gib: float = Field(description="Weights resident on the GPU at the peak.")
    working_gib: float = Field(description="KV cache, activations and decode buffers at the planned batch.")
    cost: float = Field(default=0.0, description="0 for the profile's own models; higher means smaller or slower.")
    offload: bool = False
    why: str = ""

    @property
    def need_gib(self) -> float:
        return round(self.weights_gib + self.working_gib + CUDA_CONTEXT_GIB, 1)


# ---- figures ------------------------------------------------------------------------------------------------
# LLaVA-1.5: Vicuna/LLaMA text model + CLIP ViT-L/14-336 (0.30 B) + projector.
LLAVA_13B_PARAMS = 13.35
LLAVA_7B_PARAMS = 7.06
_LLAVA_13B_KV = kv_cache_gib(layers=40, kv_heads=40, head_dim=128, tokens=CAPTION_SEQUENCES * CAPTION_TOKENS)
_LLAVA_7B_KV = kv_cache_gib(layers=32, kv_heads=32, head_dim=128, tokens=CAPTION_SEQUENCES * CAPTION_TOKENS)
# bitsandbytes 4-bit: 0.5 byte per weight plus one fp32 scale per 64 weights; embeddings and lm_head stay fp16.
_LLAVA_7B_4BIT = weights_gib(6.80, 0.5625) + weights_gib(0.262, 2)

# SDXL (docs/models.md): base UNet 2.567 B, refiner UNet 2.260 B, CLIP-L 0.123 B, OpenCLIP-bigG 0.695 B,
# VAE 0.084 B. Base and refiner share text_encoder_2 and the VAE.
_SDXL_BASE_UNET = weights_gib(2.567, 2)
_SDXL_REFINER_UNET = weights_gib(2.260, 2)
_SDXL_SHARED = weights_gib(0.123 + 0.695 + 0.084, 2)
# UNet activations for 8 images with classifier-free guidance (~2.5 GiB with SDPA) and, not at the same
# time, one 1024 x 1024 VAE decode upcast to fp32 (~5 GiB): the service decodes a batch one image at a time.
_SDXL_WORKING_1024 = 5.0

_QWEN_7B_KV = kv_cache_gib(layers=28, kv_heads=4, head_dim=128, tokens=LLM_SEQUENCES * LLM_TOKENS)
_QWEN_3B_KV = kv_cache_gib(layers=36, kv_heads=2, head_dim=128, tokens=LLM_SEQUENCES * LLM_TOKENS)
_QWEN_1_5B_KV = kv_cache_gib(layers=28, kv_heads=2, head_dim=128, tokens=LLM_SEQUENCES * LLM_TOKENS)
_ACTIVATIONS = 0.5

LLAVA_13B = "llava-hf/llava-1.5-13b-hf"
LLAVA_7B = "llava-hf/llava-1.5-7b-hf"
LLAVA_7B_4BIT = "unsloth/llava-1.5-7b-hf-bnb-4bit"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"
QWEN_7B = "Qwen/Qwen2.5-7B-Instruct"
QWEN_3B = "Qwen/Qwen2.5-3B-Instruct"
QWEN_1_5B = "Qwen/Qwen2.5-1.5B-Instruct"


def _gpu_profile_options() -> dict[str, list[ServiceOption]]:
    sdxl_all = _SDXL_BASE_UNET + _SDXL_REFINER_UNET + _SDXL_SHARED
    return {
        "caption": [
            ServiceOption(
                service="caption", label="LLaVA-1.5-13B, fp16", models={"caption": LLAVA_13B},
                weights_gib=weights_gib(LLAVA_13B_PARAMS, 2), working_gib=_LLAVA_13B_KV + _ACTIVATIONS,
            ),
            ServiceOption(
                service="caption", label="LLaVA-1.5-7B, fp16", models={"caption": LLAVA_7B},
                weights_gib=weights_gib(LLAVA_7B_PARAMS, 2), working_gib=_LLAVA_7B_KV + _ACTIVATIONS, cost=1.0,
                why="LLaVA-1.5-13B in fp16 does not fit here",
            ),
            ServiceOption(
                service="caption", label="LLaVA-1.5-7B, 4-bit", models={"caption": LLAVA_7B_4BIT},
                weights_gib=_LLAVA_7B_4BIT, working_gib=_LLAVA_7B_KV + _ACTIVATIONS, cost=2.0,
                why="only a 4-bit LLaVA-7B fits here (pre-quantized with bitsandbytes: `pip install bitsandbytes`)",
            ),
        ],
        "illustrate": [
            ServiceOption(
                service="illustrate", label="SDXL base + refiner, fp16",
                models={"illustrate": SDXL_BASE, "refiner": SDXL_REFINER},
                weights_gib=sdxl_all, working_gib=_SDXL_WORKING_1024,
            ),
            ServiceOption(
                service="illustrate", label="SDXL base + refiner, fp16, CPU offload",
                models={"illustrate": SDXL_BASE, "refiner": SDXL_REFINER},
                weights_gib=_SDXL_BASE_UNET, working_gib=_SDXL_WORKING_1024, cost=0.5, offload=True,
                why="FABULA_OFFLOAD is on: only the component at work (at most the base UNet) sits on the GPU, and pictures come slower",
            ),
            ServiceOption(
                service="illustrate", label="SDXL base only, fp16", models={"illustrate": SDXL_BASE, "refiner": None},
                weights_gib=_SDXL_BASE_UNET + _SDXL_SHARED, working_gib=_SDXL_WORKING_1024, cost=1.5,
                why="base and refiner together do not fit here; the base alone paints the whole schedule",
            ),
        ],
        "llm": [
            ServiceOption(
                service="llm", label="Qwen2.5-7B-Instruct, bf16", models={"llm": QWEN_7B},
                weights_gib=weights_gib(7.62, 2), working_gib=_QWEN_7B_KV + _ACTIVATIONS,
            ),
            ServiceOption(
                service="llm", label="Qwen2.5-3B-Instruct, bf16", models={"llm": QWEN_3B},
                weights_gib=weights_gib(3.09, 2), working_gib=_QWEN_3B_KV + _ACTIVATIONS, cost=1.5,
                why="a 7B LLM does not fit here (a hosted API through FABULA_LLM_BASE_URL is the other way)",
            ),
            ServiceOption(
                service="llm", label="Qwen2.5-1.5B-Instruct, bf16", models={"llm": QWEN_1_5B},
                weights_gib=weights_gib(1.54, 2), working_gib=_QWEN_1_5B_KV + _ACTIVATIONS, cost=3.0,
                why="only a small LLM fits here (a hosted API through FABULA_LLM_BASE_URL is the other way)",
            ),
        ],
    }


PROFILE_OPTIONS: dict[Profile, dict[str, list[ServiceOption]]] = {Profile.gpu: _gpu_profile_options()}


def options_for(
    profile: Profile, service: str, *, offload: bool, configured: Mapping[str, str | None] | None = None
) -> list[ServiceOption]:
    """The ladder for one service under `offload`, narrowed to the models the operator configured.

    `configured` holds only the roles whose model was set explicitly (None: the role is switched off).
    With offload on, the illustrate service always offloads, so only offload rungs remain. A configured
    model the table does not know is planned with the size of the profile's own model, and says so.
    """
    configured = configured or {}
    ladder = [option for option in PROFILE_OPTIONS[profile][service] if option.offload == offload or service != "illustrate"]
    chosen = [
        option for option in ladder
        if all(option.models[role] == configured[role] for role in option.models if role in configured)
    ]
    if chosen:
        return chosen
    default = ladder[0]
    unknown = {role: configured[role] for role in default.models if role in configured}
    described = ", ".join(f"{role} {model_id or 'off'}" for role, model_id in unknown.items())
    return [
        default.model_copy(
            update={"label": f"{described} (size unknown: planned as {default.label})", "models": {**default.models, **unknown}}
        )
    ]


def model_changes(option: ServiceOption, profile: Profile, configured: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The FABULA_*_MODEL settings that select `option`, leaving out those already configured."""
    configured = configured or {}
    defaults = PROFILE_MODELS[profile]
    changes = {}
    for role, model_id in option.models.items():
        if role in configured or model_id == getattr(defaults, role):
            continue
        changes[SETTING_FOR_ROLE[role]] = model_id or "none"
    return changes

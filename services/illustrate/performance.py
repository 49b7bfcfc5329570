"""The speed and memory switches of the illustration engine, each applied only where it makes sense.

Every switch is a setting (`FABULA_ATTENTION`, `FABULA_CHANNELS_LAST`, `FABULA_FUSE_QKV`, `FABULA_TORCH_COMPILE`,
`FABULA_OFFLOAD`) and every one can be turned off, so a regression can be pinned on one switch by toggling it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from shared.settings import Settings

logger = logging.getLogger(__name__)

ATTENTION_CHOICES = ("sdpa", "eager", "xformers")


def unique_modules(pipelines: list[Any], names: tuple[str, ...]) -> list[torch.nn.Module]:
    """The named components of the pipelines, each shared module once, in pipeline order."""
    modules: list[torch.nn.Module] = []
    for pipeline in pipelines:
        for name in names:
            module = getattr(pipeline, name, None)
            if isinstance(module, torch.nn.Module) and not any(module is seen for seen in modules):
                modules.append(module)
    return modules


def apply_performance_settings(
    pipelines: list[Any], *, settings: Settings, device: str, compile_backend: str, compile_dynamic: bool
) -> list[str]:
    """Apply the switches to the base (first) and refiner pipelines; returns the names of those applied.

    Order matters: the attention processor first, then QKV fusion (which installs the fused SDPA processor),
    then the memory layout, then offload hooks, and compilation last so it traces the final modules.
    """
    applied: list[str] = [_set_attention(pipelines, settings.attention)]
    if settings.fuse_qkv and settings.attention == "sdpa":
        for index, pipeline in enumerate(pipelines):
            # The VAE is shared: fuse it once, through the base.
            pipeline.fuse_qkv_projections(unet=True, vae=index == 0)
        applied.append("fuse_qkv")
    if settings.channels_last:
        for module in unique_modules(pipelines, ("unet", "vae")):
            # torch 2.13's stubs leave `memory_format` out of `Module.to`'s overloads (2.14's have it); the method takes it.
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
        applied.append("channels_last")
    offloaded = False
    if settings.offload:
        if device.startswith("cuda"):
            enable_shared_cpu_offload(pipelines, device)
            applied.append("offload")
            offloaded = True
        else:
            logger.info("offload skipped: it only helps on a GPU", extra={"fields": {"device": device}})
    if settings.torch_compile:
        if offloaded:
            logger.warning("torch_compile skipped: it does not combine with offload hooks; turn one of them off")
        else:
            for module in unique_modules(pipelines, ("unet",)):
                module.compile(backend=compile_backend, fullgraph=False, dynamic=compile_dynamic)
            applied.append(f"torch_compile:{compile_backend}")
    return applied


def _set_attention(pipelines: list[Any], attention: str) -> str:
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"FABULA_ATTENTION must be one of {', '.join(ATTENTION_CHOICES)}, not {attention!r}")
    if attention == "xformers":
        for pipeline in pipelines:
            pipeline.enable_xformers_memory_efficient_attention()
        return "attention:xformers"
    from diffusers.models.attention import AttentionMixin
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processor = AttnProcessor2_0() if attention == "sdpa" else AttnProcessor()
    for module in unique_modules(pipelines, ("unet", "vae")):
        if not isinstance(module, AttentionMixin):
            raise TypeError(f"FABULA_ATTENTION cannot be set on the pipeline's {type(module).__name__}: it has no attention processors")
        module.set_attn_processor(processor)
    return f"attention:{attention}"


def enable_shared_cpu_offload(pipelines: list[Any], device: str) -> None:
    """Keep every model on the CPU until it runs, one model on the GPU at a time.

    diffusers' `enable_model_cpu_offload` removes the hooks of every component it owns, so calling it on a
    refiner that shares `text_encoder_2` and `vae` with the base would silently unhook the base's copies
    (diffusers 0.42). One chain over the unique modules, in the order a hand-off runs them, avoids that: each
    model's hook sends the previous one back to the CPU.
    """
    from accelerate import cpu_offload_with_hook

    order = ("text_encoder", "text_encoder_2", "unet")
    modules = unique_modules(pipelines, order) + unique_modules(pipelines, ("vae",))
    previous = None
    for module in modules:
        module.to("cpu")
        _, previous = cpu_offload_with_hook(module, device, prev_module_hook=previous)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

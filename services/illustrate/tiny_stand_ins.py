"""A tiny, random stand-in for `stabilityai/sdxl-turbo` (the cpu profile's painter), saved like the published repo.

SDXL-Turbo is SDXL base distilled to paint in 1–4 steps without classifier-free guidance, and published without a
refiner: one `model_index.json` (a `StableDiffusionXLPipeline`) at the top of the folder, and the scheduler
configured as in its `scheduler/scheduler_config.json` (ancestral Euler on "trailing" timesteps, so that one step
starts from pure noise). The components are the tiny SDXL base's (see `services.illustrate.tiny`). Saved in a folder
named `sdxl-turbo`, it is served with `FABULA_ILLUSTRATE_MODEL=<folder>` and `FABULA_REFINER_MODEL=none`, and the
engine recognises it as a turbo model by that name (`default_sampling`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.illustrate import tiny
from shared.atomic_build import build_once

FOLDER_NAME = "sdxl-turbo"
# Verbatim from https://huggingface.co/stabilityai/sdxl-turbo/blob/main/scheduler/scheduler_config.json
# (less "_class_name" and "_diffusers_version", which `save_pretrained` writes itself).
TURBO_SCHEDULER_CONFIG = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

_MARKER = "model_index.json"


def build_sdxl_turbo(folder: Path) -> Path:
    """Build the SDXL-Turbo stand-in into `folder` unless it is there; returns `folder`.

    Name the folder `sdxl-turbo` (`FOLDER_NAME`) for the service to pick turbo defaults (4 steps, guidance 0).
    """
    return build_once(folder, marker=_MARKER, write=_write_sdxl_turbo, what="SDXL-Turbo stand-in")


def _write_sdxl_turbo(folder: Path) -> None:
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    tokenizer = tiny._clip_tokenizer(folder / ".vocabulary")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.SEED)
        text_encoder, text_encoder_2 = tiny._text_encoders(tokenizer)
        vae = tiny._vae()
        # Both encoders (32 + 32 = 64 wide); time ids 6 × 8 plus the pooled 32 = 80, as the tiny base.
        unet = tiny._unet(cross_attention_dim=64, projection_class_embeddings_input_dim=80)
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(TURBO_SCHEDULER_CONFIG),
        add_watermarker=False,
    )
    pipeline.save_pretrained(folder)
    shutil.rmtree(folder / ".vocabulary", ignore_errors=True)

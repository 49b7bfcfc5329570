"""The two ways of painting an SDXL picture that the GPU harness compares, and the FLOPs each one needs.

- stock: the diffusers recipe as documented with default settings: the base pipeline paints decoded images,
  then the refiner runs as a separate img2img pass over them (default strength 0.3), each pipeline loaded on its
  own with its own text encoder and VAE, default attention processor.
- fabula: services/illustrate/engine.py's `IllustrateEngine` (shared encoder and VAE, ensemble-of-experts
  hand-off at `refiner_start`, the performance switches of services/illustrate/performance.py).

FLOPs are counted with PyTorch's flop counter on meta-device copies of the saved UNets and VAE (no memory, no
time on the accelerator): one guided step of each UNet, one VAE decode and encode, multiplied out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.gpu_common import count_flops

PROMPT = "A watercolor storybook illustration of a small fox reading a lantern-lit book under an old oak tree"
STOCK_REFINER_STRENGTH = 0.3  # StableDiffusionXLImg2ImgPipeline's default


@dataclass(frozen=True)
class StepFlops:
    base_step: int
    refiner_step: int
    vae_decode: int
    vae_encode: int

    def hand_off(self, base_steps: int, refiner_steps: int) -> int:
        return base_steps * self.base_step + refiner_steps * self.refiner_step + self.vae_decode

    def stock(self, steps: int) -> int:
        refiner_steps = min(int(steps * STOCK_REFINER_STRENGTH), steps)
        return steps * self.base_step + self.vae_decode + self.vae_encode + refiner_steps * self.refiner_step + self.vae_decode


def step_flops(folder: Path, *, size: int, guided: bool) -> StepFlops:
    """Per-image FLOPs of one UNet step (base, refiner), one VAE decode and one encode at `size`²."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def load_config(path: Path) -> dict[str, Any]:
        return {key: value for key, value in json.loads(path.read_text()).items() if not key.startswith("_")}

    with torch.device("meta"):
        vae = AutoencoderKL(**load_config(folder / "base" / "vae" / "config.json"))
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        latent = size // scale
        batch = 2 if guided else 1
        results = []
        for part in ("base", "refiner"):
            unet = UNet2DConditionModel(**load_config(folder / part / "unet" / "config.json"))
            config = unet.config
            time_ids = (config.projection_class_embeddings_input_dim - _pooled_width(folder, part)) // config.addition_time_embed_dim
            inputs = {
                "sample": torch.empty(batch, config.in_channels, latent, latent),
                "timestep": torch.full((batch,), 500),
                "encoder_hidden_states": torch.empty(batch, 77, config.cross_attention_dim),
                "added_cond_kwargs": {"text_embeds": torch.empty(batch, _pooled_width(folder, part)), "time_ids": torch.empty(batch, time_ids)},
            }
            results.append(count_flops(partial(unet, **inputs)))
        decode = count_flops(lambda: vae.decode(torch.empty(1, vae.config.latent_channels, latent, latent)))
        encode = count_flops(lambda: vae.encode(torch.empty(1, 3, size, size)))
    return StepFlops(base_step=results[0], refiner_step=results[1], vae_decode=decode, vae_encode=encode)


def _pooled_width(folder: Path, part: str) -> int:
    config = json.loads((folder / part / "text_encoder_2" / "config.json").read_text())
    return int(config["projection_dim"])


class StockRecipe:
    """Base to images, then the refiner as a separate img2img pass (diffusers defaults)."""

    def __init__(self, folder: Path, *, device: str, dtype: torch.dtype) -> None:
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

        self.device = device
        self.base = StableDiffusionXLPipeline.from_pretrained(folder / "base", dtype=dtype, add_watermarker=False).to(device)
        self.refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(folder / "refiner", dtype=dtype, add_watermarker=False).to(device)
        for pipeline in (self.base, self.refiner):
            pipeline.set_progress_bar_config(disable=True)

    def paint(self, batch: int, *, size: int, steps: int) -> list[Any]:
        prompts = [PROMPT] * batch
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in range(batch)]
        images = self.base(prompt=prompts, num_inference_steps=steps, width=size, height=size, generator=generators).images
        return self.refiner(prompt=prompts, image=images, num_inference_steps=steps, generator=generators).images

    def close(self) -> None:
        del self.base, self.refiner


class FabulaRecipe:
    """Fabula's illustrate engine, loaded through `IllustrateEngine.load` from the same folders."""

    def __init__(self, folder: Path, *, device: str, settings: Any) -> None:
        from services.illustrate.engine import IllustrateEngine

        self.engine = IllustrateEngine.load(folder / "base", folder / "refiner", model_id=f"random:{folder.name}", device=device, settings=settings)

    def paint(self, batch: int, *, size: int, steps: int, refiner_start: float) -> list[Any]:
        from services.illustrate.engine import GenerationJob

        jobs = [
            GenerationJob(prompt=PROMPT, negative_prompt=None, count=1, width=size, height=size, steps=steps,
                          guidance_scale=self.engine.defaults.guidance_scale, refiner_start=refiner_start, seed=seed)
            for seed in range(batch)
        ]
        return [image for images in self.engine.generate(jobs) for image in images]

    def close(self) -> None:
        del self.engine

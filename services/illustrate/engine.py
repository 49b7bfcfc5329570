"""Load SDXL base (+ refiner) once and paint batches of prompts with an ensemble-of-experts hand-off.

The base denoises the first `refiner_start` of the schedule and hands its latents to the refiner, which
finishes the same schedule (`denoising_end` / `denoising_start`); no second img2img pass. The refiner shares
`text_encoder_2` and `vae` with the base, so they are in memory once. Image i of a request with seed s is
drawn from its own generator seeded s + i, so a seed gives the same picture alone or inside a batch.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.illustrate.performance import apply_performance_settings
from services.illustrate.prompt_window import PromptWindow
from shared.model_holder import EngineInfo
from shared.settings import Settings

logger = logging.getLogger(__name__)

TURBO_STEPS = 4
TURBO_GUIDANCE_SCALE = 0.0
STANDARD_STEPS = 30
STANDARD_GUIDANCE_SCALE = 5.0
WARM_UP_STEPS = 4
MAX_CACHED_HANDOFFS = 1024


@dataclass(frozen=True)
class GenerationJob:
    """One request's worth of images; jobs with the same `batch_key` can share a pipeline call."""

    prompt: str
    negative_prompt: str | None
    count: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    refiner_start: float
    seed: int

    @property
    def batch_key(self) -> tuple[int, int, int, float, float, bool]:
        # A missing negative prompt means zeroed negative embeddings for SDXL base, an empty one does not,
        # so the two never share a call (that would change the picture a seed gives).
        return (self.width, self.height, self.steps, self.guidance_scale, self.refiner_start, self.negative_prompt is None)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + index for index in range(self.count)]


@dataclass(frozen=True)
class GenerationDefaults:
    has_refiner: bool
    steps: int
    guidance_scale: float
    refiner_start: float
    width: int
    height: int


def default_sampling(model_id: str, has_refiner: bool, settings: Settings) -> tuple[int, float]:
    """Steps and guidance when the request and settings leave them open.

    Adversarially distilled models (SDXL-Turbo) are trained for 1–4 steps without classifier-free guidance;
    SDXL base wants ~30 guided steps.
    """
    turbo = not has_refiner and "turbo" in model_id.lower()
    steps = settings.default_inference_steps or (TURBO_STEPS if turbo else STANDARD_STEPS)
    guidance = settings.default_guidance_scale
    if guidance is None:
        guidance = TURBO_GUIDANCE_SCALE if turbo else STANDARD_GUIDANCE_SCALE
    return steps, guidance


@dataclass
class IllustrateEngine:
    base: Any
    refiner: Any | None
    model_id: str
    device: str
    dtype: torch.dtype
    defaults: GenerationDefaults
    optimisations: list[str] = field(default_factory=list)
    prompt_window: PromptWindow | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _handoffs: dict[tuple[int, float], tuple[int, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        base_path: Path,
        refiner_path: Path | None,
        *,
        model_id: str,
        device: str,
        settings: Settings,
        compile_backend: str = "inductor",
        compile_dynamic: bool = True,
    ) -> IllustrateEngine:
        """Load the pipelines, apply the performance settings, and warm up where a first call would be slow.

        `compile_backend` and `compile_dynamic` go to `torch.compile` when `settings.torch_compile` is on. Dynamic
        shapes (the default) let one compiled graph serve every batch size and picture size, so a batch of a new
        shape does not pay a recompile; "aot_eager" with static shapes traces quickly without generating code.
        """
        from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

        dtype = compute_dtype(device)
        base_path = Path(base_path)
        variant = _variant(base_path / "unet", dtype)
        vae_dtype = dtype
        if dtype == torch.float16 and AutoencoderKL.load_config(base_path, subfolder="vae").get("force_upcast", True):
            # The SDXL VAE overflows in fp16: it stays in fp32 (decoding is a small share of the work).
            vae_dtype = torch.float32
        vae = AutoencoderKL.from_pretrained(base_path, subfolder="vae", dtype=vae_dtype, variant=_variant(base_path / "vae", dtype))
        base = StableDiffusionXLPipeline.from_pretrained(base_path, vae=vae, dtype=dtype, variant=variant, add_watermarker=False)
        refiner = None
        if refiner_path is not None:
            refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
                refiner_path,
                text_encoder_2=base.text_encoder_2,
                vae=vae,
                dtype=dtype,
                variant=_variant(Path(refiner_path) / "unet", dtype),
                add_watermarker=False,
            )
        pipelines = [pipeline for pipeline in (base, refiner) if pipeline is not None]
        for pipeline in pipelines:
            pipeline.set_progress_bar_config(disable=True)
            if not settings.offload or not device.startswith("cuda"):
                pipeline.to(device)
        optimisations = apply_performance_settings(
            pipelines, settings=settings, device=device, compile_backend=compile_backend, compile_dynamic=compile_dynamic
        )

        steps, guidance = default_sampling(model_id, refiner is not None, settings)
        native = base.default_sample_size * base.vae_scale_factor
        native = min(max(native, settings.min_image_size), settings.max_image_size)
        defaults = GenerationDefaults(
            has_refiner=refiner is not None,
            steps=steps,
            guidance_scale=guidance,
            refiner_start=settings.refiner_start if refiner is not None else 1.0,
            width=native,
            height=native,
        )
        engine = cls(
            base=base, refiner=refiner, model_id=model_id, device=device, dtype=dtype, defaults=defaults,
            optimisations=optimisations, prompt_window=PromptWindow.from_pipelines(pipelines),
        )
        logger.info("illustration engine ready to warm up", extra={"fields": engine.info().model_dump()})
        if settings.torch_compile or device.startswith("cuda"):
            engine.warm_up()
        return engine

    @property
    def has_refiner(self) -> bool:
        return self.refiner is not None

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.model_id,
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            extra={
                "refiner": self.has_refiner,
                "default_steps": self.defaults.steps,
                "default_guidance_scale": self.defaults.guidance_scale,
                "default_refiner_start": self.defaults.refiner_start,
                "default_size": f"{self.defaults.width}x{self.defaults.height}",
                "optimisations": ",".join(self.optimisations),
            },
        )

    def warm_up(self) -> None:
        """One small generation at the model's native size, so compilation and kernel selection happen at load."""
        defaults = self.defaults
        job = GenerationJob(
            prompt="warm-up", negative_prompt=None, count=1, width=defaults.width, height=defaults.height,
            steps=WARM_UP_STEPS,
            guidance_scale=defaults.guidance_scale, refiner_start=defaults.refiner_start, seed=0,
        )
        self.generate([job])

    def generate(self, batch: list[GenerationJob]) -> list[list[Image.Image]]:
        """Paint every job of `batch` in one pipeline call; returns each job's images in order.

        All jobs must share one `batch_key` (the micro-batcher guarantees it).
        """
        if not batch:
            return []
        first = batch[0]
        if any(job.batch_key != first.batch_key for job in batch):
            raise ValueError("a batch must hold jobs with one size, step count, guidance scale and refiner start")
        prompts = [job.prompt for job in batch for _ in range(job.count)]
        negatives = None if first.negative_prompt is None else [job.negative_prompt for job in batch for _ in range(job.count)]
        generator_device = self.device if self.device.startswith("cuda") else "cpu"
        generators = [torch.Generator(generator_device).manual_seed(seed) for job in batch for seed in job.seeds]
        with self._lock:
            latents = self._denoise(first, prompts, negatives, generators)
            images = self._decode(latents)
        results: list[list[Image.Image]] = []
        offset = 0
        for job in batch:
            results.append(images[offset : offset + job.count])
            offset += job.count
        return results

    def handoff_steps(self, steps: int, refiner_start: float) -> tuple[int, int]:
        """How many of `steps` the base and the refiner run, by the same cut-off rule diffusers applies."""
        key = (steps, refiner_start)
        if key not in self._handoffs:
            if len(self._handoffs) >= MAX_CACHED_HANDOFFS:
                self._handoffs.clear()
            scheduler = type(self.base.scheduler).from_config(self.base.scheduler.config)
            scheduler.set_timesteps(steps)
            train_steps = scheduler.config.num_train_timesteps
            cutoff = int(round(train_steps - refiner_start * train_steps))
            base_steps = sum(1 for timestep in scheduler.timesteps if timestep >= cutoff)
            self._handoffs[key] = (base_steps, len(scheduler.timesteps) - base_steps)
        return self._handoffs[key]

    def _denoise(self, job: GenerationJob, prompts: list[str], negatives: list[str] | None, generators: list[torch.Generator]) -> torch.Tensor:
        common = {
            "prompt": prompts,
            "negative_prompt": negatives,
            "num_inference_steps": job.steps,
            "guidance_scale": job.guidance_scale,
            "generator": generators,
            "output_type": "latent",
        }
        use_refiner = self.refiner is not None and job.refiner_start < 1.0
        if use_refiner:
            base_steps, refiner_steps = self.handoff_steps(job.steps, job.refiner_start)
            use_refiner = base_steps > 0 and refiner_steps > 0
        if not use_refiner:
            return self.base(**common, width=job.width, height=job.height).images
        latents = self.base(**common, width=job.width, height=job.height, denoising_end=job.refiner_start).images
        return self.refiner(**common, image=latents, denoising_start=job.refiner_start).images

    def _decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Decode one image at a time: VAE activations at 1024² are large, and this keeps a batch's peak at one image's."""
        vae = self.base.vae
        config = vae.config
        vae_dtype = next(vae.post_quant_conv.parameters()).dtype
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        images: list[Image.Image] = []
        with torch.inference_mode():
            for index in range(latents.shape[0]):
                decoded = vae.decode(latents[index : index + 1].to(dtype=vae_dtype), return_dict=False)[0]
                images.extend(self.base.image_processor.postprocess(decoded.float(), output_type="pil"))
        return images


def compute_dtype(device: str) -> torch.dtype:
    """fp16 on a GPU (half the memory, tensor cores); fp32 on a CPU, where fp16 kernels are slow or missing."""
    return torch.float16 if device.startswith("cuda") else torch.float32


def _variant(folder: Path, dtype: torch.dtype) -> str | None:
    """Read the published fp16 files where a checkpoint has them (half the bytes to load); otherwise the default."""
    if dtype != torch.float16:
        return None
    return "fp16" if any(Path(folder).glob("*.fp16.safetensors")) else None

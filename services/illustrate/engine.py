"""Load SDXL base (+ refiner) once and paint batches of prompts with an ensemble-of-experts hand-off.

The base denoises the first `refiner_start` of the schedule and hands its latents to the refiner, which
finishes the same schedule (`denoising_end` / `denoising_start`); no second img2img pass. The refiner shares
`text_encoder_2` and `vae` with the base, so they are in memory once. Image i of a request with seed s is
drawn from its own generator seeded s + i, so a seed gives the same picture alone or inside a batch.

A request may carry a reference photo that the pictures should resemble (`services.illustrate.likeness`: an
IP-Adapter on the base only), and every decoded picture passes the image safety classifier when one is loaded
(`services.illustrate.safety`); a flagged picture leaves the engine as a calm placeholder, never as its pixels.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from services.illustrate.picture_requests import (  # noqa: F401 - the engine's public names, re-exported
    DEFAULT_REFERENCE_STRENGTH,
    STANDARD_GUIDANCE_SCALE,
    STANDARD_STEPS,
    TURBO_GUIDANCE_SCALE,
    TURBO_STEPS,
    GenerationDefaults,
    GenerationJob,
    PaintedImage,
    default_sampling,
)
from services.illustrate.likeness import Likeness, LikenessWeights, per_picture_pipeline_class
from services.illustrate.performance import apply_performance_settings
from services.illustrate.picture_engine import loaded_upscaler, per_job, screened
from services.illustrate.prompt_window import PromptWindow
from services.illustrate.safety import SafetyChecker
from services.illustrate.upscaler import Upscaler
from shared.dtypes import model_dtype
from shared.errors import ModelUnavailable
from shared.model_holder import EngineInfo
from shared.settings import Settings

logger = logging.getLogger(__name__)

WARM_UP_STEPS = 4
MAX_CACHED_HANDOFFS = 1024
WARM_UP_REFERENCE_GREY = (128, 128, 128)


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
    likeness: Likeness | None = None
    likeness_unavailable: ModelUnavailable | None = None
    safety: SafetyChecker | None = None
    upscaler: Upscaler | ModelUnavailable | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _handoffs: dict[tuple[int, float], tuple[int, int]] = field(default_factory=dict, repr=False)
    restyles_photo: ClassVar[bool] = False  # it paints from the prompt; a reference photo is optional

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
        likeness: LikenessWeights | ModelUnavailable | None = None,
        safety: SafetyChecker | None = None,
        upscaler: Upscaler | ModelUnavailable | None = None,
    ) -> IllustrateEngine:
        """Load the pipelines, apply the performance settings, and warm up where a first call would be slow.

        `likeness` is the IP-Adapter to attach to the base (`likeness.find_likeness_weights`), or the
        `ModelUnavailable` that finding it raised: the engine then paints without likeness and answers a request
        with a reference photo with that error. `safety` checks every picture (`safety.SafetyChecker.load`);
        None paints without a check, so pass one whenever `settings.safety_checker` is on. `upscaler` enlarges
        pictures for print (`upscaler.Upscaler.load`), or is the `ModelUnavailable` that loading it raised: the
        engine then paints as ever and answers an upscale request with that error.

        `compile_backend` and `compile_dynamic` go to `torch.compile` when `settings.torch_compile` is on. Dynamic
        shapes (the default) let one compiled graph serve every batch size and picture size, so a batch of a new
        shape does not pay a recompile; "aot_eager" with static shapes traces quickly without generating code.
        """
        from diffusers import AutoencoderKL
        from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import StableDiffusionXLImg2ImgPipeline

        dtype = model_dtype(device, settings, prefer=torch.float16)
        base_path = Path(base_path)
        variant = _variant(base_path / "unet", dtype)
        vae_dtype = dtype
        if dtype == torch.float16 and AutoencoderKL.load_config(base_path, subfolder="vae").get("force_upcast", True):
            # The SDXL VAE overflows in fp16: it stays in fp32 (decoding is a small share of the work).
            vae_dtype = torch.float32
        vae = AutoencoderKL.from_pretrained(base_path, subfolder="vae", dtype=vae_dtype, variant=_variant(base_path / "vae", dtype))
        base = per_picture_pipeline_class().from_pretrained(base_path, vae=vae, dtype=dtype, variant=variant, add_watermarker=False)
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
        # After QKV fusion, whose processors would replace the adapter's; before the first (compiled) call.
        attached = Likeness.attach(base, likeness, device=device) if isinstance(likeness, LikenessWeights) else None

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
            reference_strength=settings.reference_strength,
        )
        engine = cls(
            base=base, refiner=refiner, model_id=model_id, device=device, dtype=dtype, defaults=defaults,
            optimisations=optimisations, prompt_window=PromptWindow.from_pipelines(pipelines),
            likeness=attached, likeness_unavailable=likeness if isinstance(likeness, ModelUnavailable) else None,
            safety=safety, upscaler=upscaler,
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
                "likeness": self.likeness is not None,
                "safety_checker": self.safety is not None,
                "upscale_model": self.upscaler.model_id if isinstance(self.upscaler, Upscaler) else None,
                "upscale_architecture": self.upscaler.architecture if isinstance(self.upscaler, Upscaler) else None,
            },
        )

    def warm_up(self) -> None:
        """One small generation at the model's native size, so compilation and kernel selection happen at load;
        a second with a reference photo when the adapter is attached (its image tokens take another path)."""
        defaults = self.defaults
        job = GenerationJob(
            prompt="warm-up", negative_prompt=None, count=1, width=defaults.width, height=defaults.height,
            steps=WARM_UP_STEPS,
            guidance_scale=defaults.guidance_scale, refiner_start=defaults.refiner_start, seed=0,
        )
        self.generate([job])
        if self.likeness is not None and defaults.reference_strength > 0:
            grey = Image.new("RGB", (defaults.width, defaults.height), WARM_UP_REFERENCE_GREY)
            self.generate([replace(job, reference=grey, reference_strength=defaults.reference_strength)])

    def require_likeness(self) -> None:
        """Raise `ModelUnavailable` unless reference photos can be honoured: call it before queueing such a job."""
        if self.likeness is None:
            raise self.likeness_unavailable or ModelUnavailable(
                "This illustration service was started without likeness (IP-Adapter) weights, so it cannot follow a "
                "reference photo; send the request without `reference_image`.",
                param="reference_image",
            )

    def require_upscaler(self) -> Upscaler:
        """The print upscaler, or the `ModelUnavailable` that says why there is none: call it before queueing."""
        return loaded_upscaler(self.upscaler)

    def generate(self, batch: list[GenerationJob]) -> list[list[Image.Image]]:
        """Paint every job of `batch` in one pipeline call; returns each job's images in order.

        Pictures the safety classifier flags come back as calm placeholders; `paint` also says which they are.
        """
        return [[painted.image for painted in images] for images in self.paint(batch)]

    def paint(self, batch: list[GenerationJob]) -> list[list[PaintedImage]]:
        """Paint every job of `batch` in one pipeline call; returns each job's pictures, with their safety flags.

        All jobs must share one `batch_key` (the micro-batcher guarantees it). A flagged picture's pixels never
        leave here: `PaintedImage.image` is then a calm placeholder of the same size. Repainting is the caller's
        choice (another seed is another picture).
        """
        if not batch:
            return []
        first = batch[0]
        if any(job.batch_key != first.batch_key for job in batch):
            raise ValueError(
                "a batch must hold jobs with one size, step count, guidance scale, refiner start and reference strength"
            )
        if first.likeness_strength > 0:
            self.require_likeness()
        prompts = [job.prompt for job in batch for _ in range(job.count)]
        negatives = _negative_prompts(batch)
        generator_device = self.device if self.device.startswith("cuda") else "cpu"
        generators = [torch.Generator(generator_device).manual_seed(seed) for job in batch for seed in job.seeds]
        with self._lock:
            likeness_inputs = self._likeness_inputs(batch)
            latents = self._denoise(first, prompts, negatives, generators, likeness_inputs)
            images = self._decode(latents)
            painted = screened(images, self.safety)
        return per_job(batch, painted)

    def _likeness_inputs(self, batch: list[GenerationJob]) -> dict[str, Any]:
        """The base call's IP-Adapter arguments: its scale set for this call, one image embedding per picture.

        Every call of a base with the adapter attached needs embeddings; at strength 0 they are zeros and the
        adapter's attention is skipped, so such a call paints what a base without the adapter paints.
        """
        if self.likeness is None:
            return {}
        first = batch[0]
        strength = first.likeness_strength
        self.likeness.set_strength(strength)
        references = [job.keyed_reference() if strength > 0 else None for job in batch for _ in range(job.count)]
        guided = first.guidance_scale > 1 and self.base.unet.config.time_cond_proj_dim is None
        return {"ip_adapter_image_embeds": self.likeness.image_embeds(references, guided=guided)}

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

    def _denoise(
        self, job: GenerationJob, prompts: list[str], negatives: list[str] | None, generators: list[torch.Generator],
        likeness_inputs: dict[str, Any],
    ) -> torch.Tensor:
        common = {
            "prompt": prompts,
            "negative_prompt": negatives,
            "num_inference_steps": job.steps,
            "guidance_scale": job.guidance_scale,
            "generator": generators,
            "output_type": "latent",
        }
        refiner = self.refiner if job.refiner_start < 1.0 else None
        if refiner is not None:
            base_steps, refiner_steps = self.handoff_steps(job.steps, job.refiner_start)
            if base_steps == 0 or refiner_steps == 0:
                refiner = None
        if refiner is None:
            return self.base(**common, **likeness_inputs, width=job.width, height=job.height).images
        latents = self.base(**common, **likeness_inputs, width=job.width, height=job.height, denoising_end=job.refiner_start).images
        return refiner(**common, image=latents, denoising_start=job.refiner_start).images

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


def _negative_prompts(batch: list[GenerationJob]) -> list[str] | None:
    """One negative prompt per picture, or None: a batch's key makes its jobs all have one or all have none."""
    if batch[0].negative_prompt is None:
        return None
    negatives: list[str] = []
    for job in batch:
        if job.negative_prompt is None:
            raise ValueError("a batch must not mix jobs with and without a negative prompt")
        negatives.extend([job.negative_prompt] * job.count)
    return negatives


def _variant(folder: Path, dtype: torch.dtype) -> str | None:
    """Read the published fp16 files where a checkpoint has them (half the bytes to load); otherwise the default."""
    if dtype != torch.float16:
        return None
    return "fp16" if any(Path(folder).glob("*.fp16.safetensors")) else None

"""Enlarge pictures for print: a Real-ESRGAN-class model loaded through spandrel, or the Lanczos filter.

spandrel reads the architecture and its settings from the weights file itself (RRDBNet for Real-ESRGAN x4, the
compact SRVGGNet, and the other published super-resolution families), so any such file works as
FABULA_UPSCALE_MODEL. A batch holds pictures of one size and one plan (the batcher groups them by `batch_key`):
they go through the model together, pass after pass, then each is resized to its exact target.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from services.illustrate.upscale_requests import UpscaleJob
from shared.dtypes import model_dtype
from shared.errors import ModelUnavailable
from shared.settings import Settings

logger = logging.getLogger(__name__)

CLASSICAL_FILTER_NOTE = "Upscaled with the Lanczos filter (a classical resize, no upscaling model on this profile)."


@dataclass
class Upscaler:
    """`descriptor` is spandrel's image model; None means the classical filter (`model_scale` 1)."""

    model_id: str
    descriptor: Any | None
    device: str
    dtype: torch.dtype
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_id: str, weights: Path | None, *, device: str, settings: Settings) -> Upscaler:
        if weights is None:
            return cls(model_id=model_id, descriptor=None, device=device, dtype=torch.float32)
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError  # type: ignore[import-untyped]  # ships no type hints

        try:
            descriptor = ModelLoader(device="cpu").load_from_file(weights)
        except (UnsupportedModelError, ValueError) as exc:
            raise ModelUnavailable(f"spandrel cannot load the upscale model '{model_id}' ({weights.name}): {exc}", param="FABULA_UPSCALE_MODEL") from exc
        if not isinstance(descriptor, ImageModelDescriptor):
            kind = type(descriptor).__name__
            raise ModelUnavailable(f"'{model_id}' is not an image-to-image model (spandrel reads it as {kind}).", param="FABULA_UPSCALE_MODEL")
        dtype = model_dtype(device, settings, prefer=torch.float16)
        if (dtype == torch.float16 and not descriptor.supports_half) or (dtype == torch.bfloat16 and not descriptor.supports_bfloat16):
            dtype = torch.float32
        descriptor.to(device).to(dtype).eval()
        logger.info("upscaler loaded", extra={"fields": {"model": model_id, "architecture": descriptor.architecture.name, "scale": descriptor.scale}})
        return cls(model_id=model_id, descriptor=descriptor, device=device, dtype=dtype)

    @property
    def model_scale(self) -> int:
        """How much one model pass enlarges; 1 for the classical filter."""
        return int(self.descriptor.scale) if self.descriptor is not None else 1

    @property
    def classical(self) -> bool:
        return self.descriptor is None

    @property
    def architecture(self) -> str:
        return self.descriptor.architecture.name if self.descriptor is not None else "Lanczos filter"

    def upscale(self, jobs: list[UpscaleJob]) -> list[Image.Image]:
        """Every job's picture at its target size; all jobs must share one `batch_key`."""
        if not jobs:
            return []
        if any(job.batch_key != jobs[0].batch_key for job in jobs):
            raise ValueError("an upscale batch must hold pictures of one size with one target size")
        plan = jobs[0].plan
        images = [job.image for job in jobs]
        if plan.passes and self.descriptor is not None:
            with self._lock:
                images = self._run_model([job.image for job in jobs], plan.passes)
        return [image.resize((plan.width, plan.height), Image.Resampling.LANCZOS) if image.size != (plan.width, plan.height) else image for image in images]

    def _run_model(self, images: list[Image.Image], passes: int) -> list[Image.Image]:
        assert self.descriptor is not None
        stacked = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images])
        tensor = torch.from_numpy(stacked).permute(0, 3, 1, 2).to(self.device, self.dtype)
        with torch.inference_mode():
            for _ in range(passes):
                tensor = self.descriptor(tensor)
            pixels = (tensor.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(array) for array in pixels]

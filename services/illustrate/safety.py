"""Picture safety: every painted picture passes an image safety classifier before anyone sees it.

Two kinds of classifier load here, told apart by their `config.json`:
- an image-classification model (transformers `AutoModelForImageClassification`), flagged when its top label is
  one of `FLAGGED_LABELS`. The default, `Falconsai/nsfw_image_detection` (a ViT-B/16 fine-tuned to `normal` /
  `nsfw`), is Apache-2.0.
- diffusers' `StableDiffusionSafetyChecker` (CLIP image embedding against concept embeddings). The published
  weights, `CompVis/stable-diffusion-safety-checker`, state no licence on their model card, so they are not a
  default; the tiny profile uses a random stand-in of that architecture (`services.illustrate.tiny_safety`).
Both load from this machine only, in fp32 (the classifier is small next to SDXL; fp16 would gain nothing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.illustrate.model_cache import cached_snapshot
from shared.errors import ModelUnavailable
from shared.profiles import TINY, tiny_dir
from shared.settings import Settings

logger = logging.getLogger(__name__)

SAFETY_MODEL_ID = "Falconsai/nsfw_image_detection"
SAFETY_MODEL_FILES = ["config.json", "model.safetensors", "preprocessor_config.json"]
CONCEPT_CHECKER = "StableDiffusionSafetyChecker"
FLAGGED_LABELS = frozenset({"nsfw", "unsafe"})


def find_safety_checker(model_id: str, settings: Settings, *, checker_id: str = SAFETY_MODEL_ID) -> Path:
    """The classifier folder for the illustration model `model_id`: the tiny stand-in beside the tiny model,
    otherwise `checker_id` from a local folder or the Hugging Face cache. Raises `ModelUnavailable` if absent."""
    if Path(checker_id).is_dir():
        return Path(checker_id)  # a classifier the operator (or a test) built or copied into a folder
    if model_id == TINY:
        from services.illustrate.tiny import SAFETY_FOLDER, build_tiny_sdxl

        return build_tiny_sdxl(tiny_dir("illustrate", settings)) / SAFETY_FOLDER
    folder = cached_snapshot(checker_id, SAFETY_MODEL_FILES)
    if folder is None:
        raise ModelUnavailable(
            f"The image safety classifier '{checker_id}' is not on this machine, and every picture must pass it. "
            "Download it with `fabula models pull gpu` (or `cpu`) on a machine with network access, or set "
            "FABULA_SAFETY_CHECKER=false to paint without it.",
            param="FABULA_SAFETY_CHECKER",
        )
    return folder


class SafetyChecker:
    """Flags pictures; `check` answers one bool per picture, True meaning it must not be shown."""

    def __init__(self, model: Any, processor: Any, *, device: str, concept_checker: bool) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.concept_checker = concept_checker
        self.flagged_ids: set[int] = set()
        if not concept_checker:
            labels = {int(index): str(name) for index, name in model.config.id2label.items()}
            self.flagged_ids = {index for index, name in labels.items() if name.lower() in FLAGGED_LABELS}
            if not self.flagged_ids:
                raise ModelUnavailable(
                    f"The safety classifier's labels ({', '.join(labels.values())}) include none that marks an unsafe "
                    f"picture ({', '.join(sorted(FLAGGED_LABELS))}); point the service at a safety classifier.",
                    param="FABULA_SAFETY_CHECKER",
                )

    @classmethod
    def load(cls, folder: Path, *, device: str) -> SafetyChecker:
        from transformers import AutoImageProcessor

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        concept_checker = CONCEPT_CHECKER in (config.get("architectures") or [])
        if concept_checker:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

            model = StableDiffusionSafetyChecker.from_pretrained(folder, dtype=torch.float32)
        else:
            from transformers import AutoModelForImageClassification

            model = AutoModelForImageClassification.from_pretrained(folder, dtype=torch.float32)
        processor = AutoImageProcessor.from_pretrained(folder)
        # transformers 5 wraps `PreTrainedModel.to` in `functools.wraps`, whose typeshed type does not bind `self`.
        checker = cls(model.to(device).eval(), processor, device=device, concept_checker=concept_checker)  # type: ignore[arg-type]
        logger.info("safety classifier ready", extra={"fields": {"folder": str(folder), "kind": type(model).__name__}})
        return checker

    def check(self, images: list[Image.Image]) -> list[bool]:
        if not images:
            return []
        rgb = [image.convert("RGB") for image in images]
        pixels = self.processor(rgb, return_tensors="pt").pixel_values.to(self.device, torch.float32)
        with torch.no_grad():
            if self.concept_checker:
                # The checker blacks out flagged arrays it is given; only its flags are used here.
                _, flags = self.model(clip_input=pixels, images=[torch.zeros(1) for _ in rgb])
                return [bool(flag) for flag in flags]
            top = self.model(pixel_values=pixels).logits.argmax(dim=-1).tolist()
        return [int(label) in self.flagged_ids for label in top]

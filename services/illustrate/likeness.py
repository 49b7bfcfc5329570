"""Likeness: pages that resemble a reference photo, through diffusers' IP-Adapter on the SDXL base.

The adapter (h94/IP-Adapter, Apache-2.0; on the tiny profile a random stand-in in the same layout) adds four
image tokens, projected from the photo's CLIP image embedding, to every cross-attention layer of the base UNet;
`set_ip_adapter_scale` weighs them against the prompt. The refiner has no adapter, so the likeness comes from the
base's share of the schedule (`refiner_start`): the refiner only sharpens what the base laid down.

Batching: image embeddings are per sample and concatenated along the batch axis, so requests with different
photos share a call; the scale is one number per call, so requests with different strengths do not. A request
without a photo runs at scale 0, where diffusers skips the image tokens altogether (the same picture as an engine
without the adapter); it never shares a call with one that has a photo, as the photo's scale would apply to it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from services.illustrate.likeness_files import ADAPTER_FILES, LIKENESS_MODEL_ID, AdapterFiles
from services.illustrate.model_cache import cached_snapshot
from shared.errors import ModelUnavailable
from shared.profiles import TINY, tiny_dir
from shared.settings import Settings

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

logger = logging.getLogger(__name__)

MAX_CACHED_REFERENCES = 32


@dataclass(frozen=True)
class LikenessWeights:
    """A local folder holding an IP-Adapter and its image encoder in the layout of `files`."""

    folder: Path
    files: AdapterFiles = ADAPTER_FILES


def find_likeness_weights(model_id: str, settings: Settings, *, adapter_id: str = LIKENESS_MODEL_ID) -> LikenessWeights:
    """The adapter for the illustration model `model_id`, from this machine only.

    The tiny model gets the tiny stand-in built beside it; any other model gets `adapter_id` (a local folder, or
    a hub id already in the Hugging Face cache). Raises `ModelUnavailable` saying what to download.
    """
    if model_id == TINY:
        from services.illustrate.tiny import LIKENESS_FOLDER, build_tiny_sdxl

        return LikenessWeights(build_tiny_sdxl(tiny_dir("illustrate", settings)) / LIKENESS_FOLDER)
    folder = cached_snapshot(adapter_id, ADAPTER_FILES.required)
    if folder is None:
        raise ModelUnavailable(
            f"Pictures that follow a reference photo need the IP-Adapter '{adapter_id}' "
            f"({', '.join(ADAPTER_FILES.required)}), which is not on this machine. Download it with "
            "`fabula models pull gpu` on a machine with network access, or send the request without `reference_image`.",
            param="reference_image",
        )
    return LikenessWeights(folder)


def reference_digest(image: Image.Image) -> str:
    """A digest of the picture's pixels: equal pixels, equal digest, whatever file or encoding they came in."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def per_picture_pipeline_class() -> type[StableDiffusionXLPipeline]:
    """`StableDiffusionXLPipeline` whose precomputed IP-Adapter embeddings hold one row per picture of the call.

    diffusers (0.42) repeats each given embedding tensor once per picture (`batch_size * num_images_per_prompt`
    copies), which suits one photo for a whole call; given one row per picture, that repetition would hand every
    picture all the photos' tokens. Here the rows are used as given and their count is checked, so each picture
    of a batch follows its own photo. Pictures from a photo passed as `ip_adapter_image` behave as in diffusers.
    """
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    class PerPictureReferencePipeline(StableDiffusionXLPipeline):
        def prepare_ip_adapter_image_embeds(
            self, ip_adapter_image, ip_adapter_image_embeds, device, num_images_per_prompt, do_classifier_free_guidance
        ):
            if ip_adapter_image_embeds is None:
                return super().prepare_ip_adapter_image_embeds(
                    ip_adapter_image, None, device, num_images_per_prompt, do_classifier_free_guidance
                )
            rows = num_images_per_prompt * (2 if do_classifier_free_guidance else 1)
            for embeds in ip_adapter_image_embeds:
                if embeds.shape[0] != rows:
                    raise ValueError(
                        f"`ip_adapter_image_embeds` needs one row per picture ({rows} with guidance negatives first) "
                        f"but has {embeds.shape[0]}"
                    )
            return [embeds.to(device=device) for embeds in ip_adapter_image_embeds]

    return PerPictureReferencePipeline


class Likeness:
    """The IP-Adapter attached to an SDXL base pipeline: sets the strength and builds per-sample image embeddings."""

    def __init__(self, pipeline: Any, device: str) -> None:
        self.pipeline = pipeline
        self.device = device
        self.embed_dim = int(pipeline.image_encoder.config.projection_dim)
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def attach(cls, pipeline: Any, weights: LikenessWeights, *, device: str) -> Likeness:
        """Load the adapter into `pipeline` through diffusers' `load_ip_adapter`, as for published weights.

        Call it after QKV fusion (which would replace the adapter's attention processors) and before the first
        compiled call. A `preprocessor_config.json` beside the image encoder is used as its feature extractor;
        without one diffusers builds a `CLIPImageProcessor` at the encoder's image size.
        """
        from transformers import CLIPImageProcessor

        files = weights.files
        processor_file = Path(weights.folder) / files.image_encoder_folder / "preprocessor_config.json"
        if getattr(pipeline, "feature_extractor", None) is None and processor_file.is_file():
            pipeline.register_modules(feature_extractor=CLIPImageProcessor.from_pretrained(processor_file.parent))
        pipeline.load_ip_adapter(
            str(weights.folder),
            subfolder=files.subfolder,
            weight_name=files.weight_name,
            image_encoder_folder=files.image_encoder_folder,
            local_files_only=True,
        )
        pipeline.image_encoder.to(device)
        pipeline.set_ip_adapter_scale(0.0)
        logger.info("likeness adapter attached", extra={"fields": {"folder": str(weights.folder), "weights": files.weight_name}})
        return cls(pipeline, device)

    def set_strength(self, strength: float) -> None:
        self.pipeline.set_ip_adapter_scale(float(strength))

    def image_embeds(self, references: list[tuple[str, Image.Image] | None], *, guided: bool) -> list[torch.Tensor]:
        """`ip_adapter_image_embeds` for one call: one row per picture, in order, negatives first when `guided`.

        `references` holds a (digest, photo) per picture, or None for a picture without one (zeros: only valid at
        strength 0). The negative of a photo is a zero embedding, as diffusers' own `encode_image` makes it.
        """
        rows = [self._embedding(*reference) if reference else None for reference in references]
        template = next((row for row in rows if row is not None), None)
        if template is None:
            template = torch.zeros(1, self.embed_dim, device=self.device, dtype=self.pipeline.image_encoder.dtype)
        positives = torch.cat([row if row is not None else torch.zeros_like(template) for row in rows])[:, None, :]
        if guided:
            positives = torch.cat([torch.zeros_like(positives), positives])
        return [positives]

    def _embedding(self, digest: str, photo: Image.Image) -> torch.Tensor:
        """The photo's CLIP image embedding, kept for the next pages of the same book."""
        if digest in self._embeddings:
            self._embeddings.move_to_end(digest)
            return self._embeddings[digest]
        with torch.no_grad():
            embedding, _ = self.pipeline.encode_image(photo.convert("RGB"), self.device, 1)
        self._embeddings[digest] = embedding
        while len(self._embeddings) > MAX_CACHED_REFERENCES:
            self._embeddings.popitem(last=False)
        return embedding

"""A random tiny image safety classifier (diffusers' `StableDiffusionSafetyChecker` layout), and a way to make one
that flags chosen pictures through its own forward pass.

The checker embeds a picture with a CLIP vision tower and flags it when the cosine similarity to any of its
concept embeddings passes that concept's threshold. The tiny stand-in's concepts are random directions with a
threshold no picture reaches; `write_flagging_checker` copies a checker and sets its first concepts to the
embeddings of given pictures, so those pictures, and ones close to them, are flagged for real.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from services.illustrate.tiny_likeness import let_the_picture_decide

IMAGE_SIZE = 32
PROJECTION_DIM = 32
UNREACHABLE = 1.01  # a cosine similarity never exceeds 1
FLAGGING_THRESHOLD = 0.99


def write_tiny_safety_checker(folder: Path) -> None:
    """Save a tiny random checker and its `CLIPImageProcessor` into `folder` (seed the torch RNG first)."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 1000},
        vision_config={"image_size": IMAGE_SIZE, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 4},
        projection_dim=PROJECTION_DIM,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    let_the_picture_decide(checker.vision_model)
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn_like(checker.concept_embeds))
        checker.special_care_embeds.copy_(torch.randn_like(checker.special_care_embeds))
        checker.concept_embeds_weights.fill_(UNREACHABLE)
        checker.special_care_embeds_weights.fill_(UNREACHABLE)
    checker.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)


def write_flagging_checker(source: Path, target: Path, pictures: list[Image.Image], *, threshold: float = FLAGGING_THRESHOLD) -> Path:
    """Copy the checker in `source` to `target` with its first concepts set to the embeddings of `pictures`.

    A picture is then flagged when its embedding's cosine similarity to one of them is above `threshold`.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    checker = StableDiffusionSafetyChecker.from_pretrained(source).eval()
    processor = CLIPImageProcessor.from_pretrained(source)
    if not 0 < len(pictures) <= checker.concept_embeds.shape[0]:
        raise ValueError(f"a checker holds 1 to {checker.concept_embeds.shape[0]} concepts, not {len(pictures)}")
    with torch.no_grad():
        pixels = processor([picture.convert("RGB") for picture in pictures], return_tensors="pt").pixel_values
        embeddings = checker.visual_projection(checker.vision_model(pixels)[1])
        checker.concept_embeds[: len(pictures)] = embeddings
        checker.concept_embeds_weights[: len(pictures)] = threshold
    checker.save_pretrained(target)
    processor.save_pretrained(target)
    return target

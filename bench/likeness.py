"""How much the pages look like the photo: CLIP image–image similarity with and without the reference.

    python bench/likeness.py --tiny                                          # tiny models, CPU, seconds
    python bench/likeness.py --device cuda --photo me.jpg --size 1024        # the configured models (gpu profile)
    python bench/likeness.py --device cuda --encoder /models/clip-vit-large  # judge with another CLIP vision model

Every page is painted twice from the same prompt and seed, once with the photo as the IP-Adapter reference and
once without, and each picture's CLIP image embedding is compared with the photo's (cosine similarity). The
judge is the adapter's own image encoder unless `--encoder` names a CLIP vision model folder; an independent
judge avoids grading the adapter with the encoder it was trained on. "gain" is with minus without.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from bench.common import machine_description, quiet_libraries, text_table  # noqa: E402

DEFAULT_PHOTO = Path(__file__).resolve().parent.parent / "webapp" / "samples" / "cat.jpg"
PAGE_PROMPTS = [
    "a watercolor storybook illustration of the hero walking through a sunny meadow",
    "a watercolor storybook illustration of the hero reading a book under a tree at night",
    "a watercolor storybook illustration of the hero sailing a small boat on a calm lake",
    "a watercolor storybook illustration of the hero waving goodbye at a cottage door",
]


class PageLikeness(BaseModel):
    page: int
    prompt: str
    seed: int
    without_reference: float
    with_reference: float

    @property
    def gain(self) -> float:
        return self.with_reference - self.without_reference


class LikenessReport(BaseModel):
    model: str
    judge: str
    strength: float
    size: int
    steps: int
    machine: str
    pages: list[PageLikeness]

    @property
    def mean_gain(self) -> float:
        return sum(page.gain for page in self.pages) / len(self.pages) if self.pages else 0.0

    def table(self) -> str:
        rows = [[page.page, page.seed, page.without_reference, page.with_reference, page.gain] for page in self.pages]
        rows.append(["mean", "", _mean(p.without_reference for p in self.pages), _mean(p.with_reference for p in self.pages), self.mean_gain])
        return text_table(["page", "seed", "without", "with", "gain"], rows)

    def summary(self) -> dict[str, Any]:
        return {**self.model_dump(), "mean_gain": self.mean_gain}


class ClipJudge:
    """Cosine similarity between CLIP image embeddings from one vision model and its image processor."""

    def __init__(self, model: Any, processor: Any, name: str) -> None:
        self.model, self.processor, self.name = model, processor, name

    @classmethod
    def from_folder(cls, folder: Path, *, device: str) -> ClipJudge:
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        model = CLIPVisionModelWithProjection.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        return cls(model, CLIPImageProcessor.from_pretrained(folder), str(folder))

    @classmethod
    def from_engine(cls, engine: Any) -> ClipJudge:
        """The IP-Adapter's own image encoder and feature extractor, as loaded in the engine."""
        return cls(engine.base.image_encoder, engine.base.feature_extractor, "the IP-Adapter's image encoder")

    def similarities(self, photo: Image.Image, pictures: list[Image.Image]) -> list[float]:
        import torch

        parameter = next(self.model.parameters())
        pixels = self.processor([photo.convert("RGB"), *(p.convert("RGB") for p in pictures)], return_tensors="pt").pixel_values
        with torch.no_grad():
            embeddings = self.model(pixel_values=pixels.to(parameter.device, parameter.dtype)).image_embeds.float()
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
        return (embeddings[1:] @ embeddings[0]).tolist()


def measure_likeness(engine: Any, photo: Image.Image, prompts: list[str], *, judge: ClipJudge, strength: float, size: int,
                     steps: int, seed: int = 0) -> LikenessReport:
    """Paint each prompt with and without `photo` (same seed) and compare both with the photo."""
    from services.illustrate.engine import GenerationJob

    engine.require_likeness()
    pages: list[PageLikeness] = []
    for page, prompt in enumerate(prompts):
        job = GenerationJob(prompt=prompt, negative_prompt=None, count=1, width=size, height=size, steps=steps,
                            guidance_scale=engine.defaults.guidance_scale, refiner_start=engine.defaults.refiner_start,
                            seed=seed + page, reference=photo, reference_strength=strength)
        with_photo = engine.generate([job])[0][0]
        without = engine.generate([replace(job, reference=None)])[0][0]
        without_score, with_score = judge.similarities(photo, [without, with_photo])
        pages.append(PageLikeness(page=page + 1, prompt=prompt, seed=job.seed, without_reference=without_score, with_reference=with_score))
    return LikenessReport(model=engine.model_id, judge=judge.name, strength=strength, size=size, steps=steps,
                          machine=machine_description(), pages=pages)


def load_engine(*, tiny: bool, device: str, cache_dir: Path | None) -> Any:
    """The illustration engine with its likeness adapter, as the service loads it (no safety check: the
    benchmark compares pictures, and a placeholder would hide one)."""
    from services.illustrate.engine import IllustrateEngine
    from services.illustrate.likeness import find_likeness_weights
    from shared.profiles import TINY, model_id_for, resolve_model_path, tiny_dir
    from shared.settings import Profile, Settings

    overrides: dict[str, Any] = {"profile": Profile.tiny} if tiny else {}
    if cache_dir is not None:
        overrides["cache_dir"] = cache_dir
    settings = Settings(**overrides)
    model_id = TINY if tiny else (model_id_for("illustrate", settings) or TINY)
    if model_id == TINY:
        from services.illustrate.tiny import BASE_FOLDER, REFINER_FOLDER, build_tiny_sdxl

        folder = build_tiny_sdxl(tiny_dir("illustrate", settings))
        base, refiner = folder / BASE_FOLDER, folder / REFINER_FOLDER
    else:
        refiner_id = model_id_for("refiner", settings)
        base = resolve_model_path(model_id, role="illustrate", settings=settings)
        refiner = resolve_model_path(refiner_id, role="refiner", settings=settings) if refiner_id else None
    return IllustrateEngine.load(base, refiner, model_id=model_id, device=device, settings=settings,
                                 likeness=find_likeness_weights(model_id, settings))


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny random models (built in --cache-dir or a temporary folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--encoder", type=Path, default=None, help="a CLIP vision model folder to judge with")
    parser.add_argument("--pages", type=int, default=len(PAGE_PROMPTS))
    parser.add_argument("--strength", type=float, default=0.6)
    parser.add_argument("--size", type=int, default=None, help="default 64 with --tiny, else 1024")
    parser.add_argument("--steps", type=int, default=None, help="default 4 with --tiny, else 30")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    prompts = [PAGE_PROMPTS[index % len(PAGE_PROMPTS)] for index in range(args.pages)]
    with tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        cache_dir = args.cache_dir or (Path(folder) if args.tiny else None)
        engine = load_engine(tiny=args.tiny, device=args.device, cache_dir=cache_dir)
        judge = ClipJudge.from_folder(args.encoder, device=args.device) if args.encoder else ClipJudge.from_engine(engine)
        report = measure_likeness(engine, Image.open(args.photo), prompts, judge=judge, strength=args.strength,
                                  size=args.size or (64 if args.tiny else 1024), steps=args.steps or (4 if args.tiny else 30))
    print(f"likeness of {report.model} (strength {report.strength}, {report.size}px, {report.steps} steps), judged by {report.judge}")
    print(f"on {report.machine}")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.summary(), indent=2), encoding="utf-8")
    return 0


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


if __name__ == "__main__":
    sys.exit(main())

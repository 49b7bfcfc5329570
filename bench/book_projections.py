"""What the book's critical path would be if the pipeline changed, computed with the latency stand-in's own rules.

Every projection prices replies the way the stand-in does (`schema_instance` at the profile's string length, tokens
≈ characters / 4, the profile's seconds per token) with the gpu profile's length budgets, and the pictures with the
stand-in's batching (`LatencyProfile.image_seconds`), so a projection and a measured run pay for the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from bench.latency_services import LatencyProfile
from bench.schema_instance import schema_instance
from webapp.story.plan import LengthBudget, outline_model, pages_model

SHORT_BEAT = 60


class CriticalPath(BaseModel):
    """Fabula's critical path in seconds: caption + outline + max(write, illustrate) + book, where `write` is the
    longest page text plus the longest translation (each page's chain runs beside the others)."""

    caption: float
    outline: float
    page_text: float
    translation: float
    write: float
    illustrate: float
    book: float
    total: float
    outline_tokens: int = 0
    page_text_tokens: int = 0
    translation_tokens: int = 0


class Projection(BaseModel):
    change: str
    where: str
    critical_path_seconds: float
    speedup: float


def _seconds(instance: Any, profile: LatencyProfile) -> float:
    return profile.llm_seconds(profile.tokens(json.dumps(instance, ensure_ascii=False)))


def _outline(pages: int, budget: LengthBudget, profile: LatencyProfile) -> dict:
    return schema_instance(outline_model(pages, budget).model_json_schema(), string_chars=profile.string_chars)


def _without_scene_prompts(outline: dict) -> dict:
    return {**outline, "pages": [{key: value for key, value in page.items() if key != "scene_prompt"} for page in outline["pages"]]}


def streamed_pictures_seconds(outline: dict, profile: LatencyProfile) -> tuple[float, float]:
    """(outline seconds, when the last picture is done) if each picture were requested the moment the streamed
    outline holds everything its prompt needs: the character sheet, and the cover's or the page's scene prompt.

    Replays the stand-in's accelerator: one call at a time; a call opens when the device is free and a request
    waits, collects what arrives within the batching window, up to a batch."""
    text = json.dumps(outline, ensure_ascii=False)
    total = _seconds(outline, profile)

    def ready_at(fragment: str) -> float:
        return total * (text.index(fragment) + len(fragment)) / len(text)

    characters = ready_at(json.dumps(outline["characters"], ensure_ascii=False))
    prompts = [outline["cover_prompt"], *(page["scene_prompt"] for page in outline["pages"])]
    arrivals = sorted(max(characters, ready_at(json.dumps(prompt, ensure_ascii=False))) for prompt in prompts)
    window, device_free, index = profile.batch_window_ms / 1000, 0.0, 0
    while index < len(arrivals):
        opens = max(device_free, arrivals[index]) + window
        batch = 0
        while index < len(arrivals) and arrivals[index] <= opens and batch < profile.image_batch_size:
            batch, index = batch + 1, index + 1
        device_free = opens + profile.image_seconds(batch)
    return total, device_free


def projections(critical: CriticalPath, profile: LatencyProfile, *, pages: int, images: int, sequential_seconds: float) -> list[Projection]:
    """The changes still open after the outline-first pipeline, each priced alone, and the two text changes together."""
    budget = LengthBudget()
    outline = _outline(pages, budget, profile)
    short_outline = _outline(pages, dataclasses.replace(budget, beat=SHORT_BEAT), profile)
    page_with_scene = schema_instance(pages_model(1, budget).model_json_schema(), string_chars=profile.string_chars)["pages"][0]
    page_call = _seconds(page_with_scene, profile)
    fixed = critical.caption + critical.book

    outline_seconds, last_picture = streamed_pictures_seconds(outline, profile)
    streamed = fixed + max(outline_seconds + critical.write, last_picture)
    short_beats = fixed + _seconds(short_outline, profile) + max(critical.write, critical.illustrate)

    def scenes_per_page(outline_instance: dict) -> float:
        # The cover is requested with the pages, so the whole book is one set of batches after the page calls.
        return fixed + _seconds(_without_scene_prompts(outline_instance), profile) + page_call + max(critical.translation, critical.illustrate)

    rows = [
        ("stream the outline and request each picture as soon as the character sheet and its scene prompt are complete",
         "webapp/story/writer.py (outline with stream=True, parsed as it arrives), webapp/jobs/pipeline.py (_run)", streamed),
        (f"shorter beats: at most {SHORT_BEAT} characters instead of {budget.beat} (a beat only steers its page's text)",
         "webapp/story/plan.py (LengthBudget.beat), webapp/story/prompts.py (outline_messages)", short_beats),
        (("scene prompts out of the outline: each page's call writes its text and its scene prompt; the pictures are "
          "requested as the page calls return"),
         ("webapp/story/plan.py (outline_model, page_text_model), webapp/story/writer.py (write_page), "
          "webapp/jobs/pipeline.py (_run, write, illustrate)"), scenes_per_page(outline)),
        (f"both: {SHORT_BEAT}-character beats and scene prompts written with each page", "as the two rows above",
         scenes_per_page(short_outline)),
    ]
    if 1 < profile.image_batch_size < images:  # a device that paints one picture per call gains nothing from batches
        one_call = profile.image_seconds_per_call + profile.image_seconds_per_extra_image * (images - 1)
        rows.append((
            f"one image call for the whole book: batches of {images} or more pictures instead of {profile.image_batch_size}",
            "the illustrate service's FABULA_MAX_BATCH_SIZE (shared/settings.py; 8 by default)",
            fixed + critical.outline + max(critical.write, one_call),
        ))
    return [Projection(change=change, where=where, critical_path_seconds=seconds, speedup=sequential_seconds / seconds)
            for change, where, seconds in rows]

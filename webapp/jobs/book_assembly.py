"""Gather a job's saved steps into `BookContent` and render the PDF (pure apart from reading artifacts)."""

from __future__ import annotations

from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.pdf import render_book
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.models import JobRecord
from webapp.jobs.pipeline import COVER, image_name
from webapp.story.options import StoryOptions
from webapp.story.plan import StoryPlan, Translation


def book_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/books/{token}.pdf"


def assemble_book(record: JobRecord, steps: dict[str, dict], artifacts: ArtifactStore, public_url: str) -> bytes:
    options = StoryOptions.model_validate(record.options)
    plan = StoryPlan.model_validate(steps["plan"])
    translation = Translation.model_validate(steps.get("translation") or {"title": plan.title, "pages": [p.text for p in plan.pages]})

    def image(page: int) -> bytes | None:
        name = image_name(page)
        return artifacts.read(record.id, name) if artifacts.exists(record.id, name) else None

    brand = None
    if options.brand:
        brand = BookBrand(
            name=options.brand.name,
            voice=options.brand.voice,
            message=options.brand.message,
            logo_png=artifacts.read(record.id, "logo.png") if artifacts.exists(record.id, "logo.png") else None,
            primary_color=options.brand.primary_color,
            secondary_color=options.brand.secondary_color,
            cta_url=options.brand.cta_url,
            cta_text=options.brand.cta_text,
        )
    content = BookContent(
        title=translation.title,
        author=options.brand.name if options.brand else "Fabula",
        language=options.language,
        subject=steps.get("caption", {}).get("caption", "")[:300],
        cover_png=image(COVER),
        pages=[BookPage(number=index, text=text, image_png=image(index)) for index, text in enumerate(translation.pages, start=1)],
        download_url=book_url(public_url, record.book_token or ""),
        brand=brand,
        original_title=plan.title if options.bilingual and options.language != "en" else None,
        original_texts=[page.text for page in plan.pages] if options.bilingual and options.language != "en" else None,
    )
    return render_book(content)

"""The studio page (Gradio Blocks): photo and options on top, live progress, the book as it fills in, edits.

Every long action streams `StoryScreen` values into the same output components, listed once in `outputs`.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from shared.settings import Profile
from webapp.api.state import WebState
from webapp.http_guards import GradioCopies
from webapp.story.languages import LANGUAGES
from webapp.story.options import MOST_PAGES, Audience, StoryOptions
from webapp.story.styles import STYLES
from webapp.ui import look, render
from webapp.ui.callbacks import StudioCallbacks
from webapp.ui.photo_input import photo_input

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
_PAGE_CAPTION = re.compile(r"Page (\d+)")
# Studio actions show their own progress line; Gradio's overlay would also pin a red "Error" badge on every
# output after a refused request, beside the toast that already says why.
QUIET: dict[str, Any] = {"show_progress": "hidden"}


def sample_photos() -> list[tuple[Path, str, str]]:
    """(path, what it shows, credit) for each sample photo, read from samples/CREDITS.md."""
    credits: dict[str, tuple[str, str]] = {}
    credits_file = SAMPLES_DIR / "CREDITS.md"
    if credits_file.is_file():
        for line in credits_file.read_text(encoding="utf-8").splitlines():
            cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            if len(cells) == 3 and cells[0].endswith((".jpg", ".png")):
                credits[cells[0]] = (cells[1], cells[2])
    photos = []
    for path in sorted(SAMPLES_DIR.glob("*.jpg")):
        what, credit = credits.get(path.name, (path.stem.replace("-", " ").capitalize(), ""))
        photos.append((path, what, credit))
    return photos


def _language_choices() -> list[tuple[str, str]]:
    return [(language.name if language.native == language.name else f"{language.native} — {language.name}", language.code) for language in LANGUAGES]


def _selected_page(event: gr.SelectData) -> int:
    """The page a clicked thumbnail shows, read from its caption ("Cover" is 0)."""
    caption = (event.value.get("caption") if isinstance(event.value, dict) else None) or ""
    if caption == render.COVER_CAPTION:
        return 0
    match = _PAGE_CAPTION.search(caption)
    return int(match.group(1)) if match else event.index


def build_ui(state: WebState) -> gr.Blocks:
    settings = state.settings
    callbacks = StudioCallbacks(state)
    defaults = StoryOptions()
    max_pages = min(MOST_PAGES, settings.max_book_pages)
    likeness_default = settings.reference_strength
    samples = sample_photos()

    # Files handed to the page are copied into Gradio's cache; every hour, drop copies older than a day.
    with gr.Blocks(title=look.TITLE, delete_cache=(3600, 86400)) as blocks:
        gr.Markdown(look.INTRO, elem_id="intro")
        if settings.profile == Profile.tiny:
            gr.Markdown(look.DEMO_BANNER, elem_id="demo-banner")
        elif settings.profile == Profile.offline:
            gr.Markdown(look.OFFLINE_BANNER, elem_id="demo-banner")

        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                gr.Markdown("### 1 · Your photo", elem_classes=["section-heading"])
                photo = photo_input(label="Photo", sources=["upload", "clipboard"], height=300, elem_id="photo-input")
                if samples:
                    gr.Examples(
                        examples=[[str(path)] for path, _, _ in samples], inputs=[photo], label="…or click a sample photo", examples_per_page=8,
                    )
                    gr.Markdown(
                        "Sample photos: " + " · ".join(f"{what} ({credit})" for _, what, credit in samples if credit),
                        elem_id="sample-credits",
                    )
            with gr.Column(scale=7):
                gr.Markdown("### 2 · Your story", elem_classes=["section-heading"])
                with gr.Row():
                    # A number box without limits of its own: a value out of range is refused with the REST API's
                    # message when the book is asked for, never quietly changed into another book.
                    pages = gr.Number(
                        value=min(defaults.pages, max_pages), precision=0, label="Pages", info=f"1–{max_pages}", elem_id="pages-input",
                    )
                    language = gr.Dropdown(_language_choices(), value=defaults.language, label="Language", elem_id="language-dropdown")
                with gr.Row():
                    style = gr.Dropdown([(preset.label, preset.id) for preset in STYLES], value=defaults.style, label="Picture style")
                    audience = gr.Dropdown(
                        [(look.AUDIENCE_LABELS.get(item.value, item.value), item.value) for item in Audience], value=defaults.audience.value, label="Reader"
                    )
                with gr.Row():
                    tone = gr.Dropdown(look.TONES, value=defaults.tone, allow_custom_value=True, label="Tone", info="Pick one or type your own.")
                    character_names = gr.Textbox("", label="Character names", placeholder="e.g. Mia, Captain Whiskers", info="Optional, comma-separated.")
                idea = gr.Textbox("", label="Story idea", placeholder="Optional, e.g. 'the cat wants to fly to the moon'", lines=2, max_length=1000)
                bilingual = gr.Checkbox(label="Also print the English text under each page (bilingual book)", value=False)
                with gr.Row():
                    print_size = gr.Dropdown(
                        look.PRINT_SIZE_CHOICES, value=defaults.print.value, label="PDF for",
                        info="A print size adds 3 mm bleed and upscales the pictures to 300 dpi; the reader and EPUB keep screen pictures.",
                    )
                    crop_marks = gr.Checkbox(label="Crop marks (print sizes; most print-on-demand shops want none)", value=defaults.crop_marks)
                with gr.Row():
                    narrate = gr.Checkbox(label="Read the book aloud (reader, EPUB and audiobook)", value=defaults.narrate)
                    likeness = gr.Slider(
                        0.0, 1.0, value=likeness_default, step=0.05, label="Likeness to the photo",
                        info="How strongly the pictures follow the photo's people and pets; 0 turns it off.",
                    )
                with gr.Accordion("Brand kit (optional, for marketers)", open=False, elem_id="brand-kit"):
                    gr.Markdown("Weave a brand's message into the story and dress the PDF in its colours, logo and call to action.")
                    with gr.Row():
                        brand_name = gr.Textbox("", label="Brand name", max_length=80)
                        brand_voice = gr.Textbox("", label="Voice", placeholder="e.g. playful, confident", max_length=120)
                    brand_message = gr.Textbox("", label="Message or product to weave in", max_length=300)
                    with gr.Row():
                        logo = photo_input(label="Logo", sources=["upload"], height=120)
                        with gr.Column():
                            brand_primary_color = gr.ColorPicker(value="#1F3A5F", label="Primary colour")
                            brand_secondary_color = gr.ColorPicker(value="#F2B134", label="Secondary colour")
                    with gr.Row():
                        brand_cta_url = gr.Textbox("", label="Call-to-action link", placeholder="https://…")
                        brand_cta_text = gr.Textbox("", label="Call-to-action text", placeholder="e.g. Visit our shop", max_length=80)
                generate = gr.Button("Make my storybook", variant="primary", size="lg", elem_id="generate-button")

        gr.Markdown("### 3 · Your book", elem_classes=["section-heading"])
        idle = '<div class="fabula-progress" data-status="idle"><p class="sentence">Your book will appear here, page by page, as it is made.</p></div>'
        progress = gr.HTML(idle, elem_id="progress")
        with gr.Column(visible=False, elem_id="book-area") as book_area:
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=200):
                    cover = gr.Image(label="Cover", interactive=False, height=260, elem_id="cover-image", buttons=["download", "fullscreen"])
                with gr.Column(scale=5):
                    title = gr.HTML(elem_id="book-title")
                    version_choice = gr.Dropdown(
                        label="Versions", choices=[], visible=False, elem_id="version-dropdown", info="Both versions are kept; pick one to see it."
                    )
                    with gr.Row(visible=False, elem_id="book-result") as result:
                        with gr.Column(scale=3):
                            book_file = gr.File(label="Your book (PDF)", interactive=False, elem_id="book-file")
                            link = gr.HTML(elem_id="book-link")
                        with gr.Column(scale=2, min_width=200):
                            # No label or buttons over the picture: they would cover the code's quiet zone.
                            qr = gr.Image(
                                label=look.QR_CAPTION, show_label=False, format="png", type="pil", interactive=False, height=240, elem_id="book-qr",
                                buttons=[],
                            )
                            gr.Markdown(look.QR_CAPTION, elem_id="qr-caption")
                            if state.address_warning:
                                gr.Markdown(look.address_note(state.address_warning), elem_id="address-warning")
            # A CSS height, not "auto": Gradio 6 gives an "auto" gallery a fixed 450 px box (55 % of the window at
            # most) that clips a second row and leaves one row floating in empty space. "max-content" fits every row.
            gallery = gr.Gallery(
                label="Pages", columns=render.FEW_COLUMNS, height="max-content", fit_columns=False, object_fit="contain", allow_preview=True,
                elem_id="pages-gallery", buttons=["download", "fullscreen"],
            )
            reader = gr.HTML(elem_id="story-reader")
            with gr.Row(elem_classes=["edit-row"]):
                stop = gr.Button("Cancel", elem_id="cancel-button", variant="secondary", scale=0, min_width=120)
                go_on = gr.Button("Resume", elem_id="resume-button", variant="secondary", scale=0, min_width=120)

        with gr.Column(visible=False, elem_id="edit-panel") as editing:
            gr.Markdown(
                "### 4 · Change it\nPick a page (or click its picture), then paint a new picture or rewrite its text. "
                "The book is bound again; nothing else is redone."
            )
            with gr.Row(equal_height=False, elem_classes=["edit-row"]):
                page_choice = gr.Dropdown(label="Page", choices=[], value=None, elem_id="page-dropdown", scale=1, min_width=140)
                repaint = gr.Button("New picture", elem_id="repaint-button", scale=1, min_width=140)
                instruction = gr.Textbox("", label="How should the text change?", placeholder="Optional, e.g. 'make it funnier'", max_length=300, scale=3)
                rewrite = gr.Button("Rewrite text", elem_id="rewrite-button", scale=1, min_width=140)
            with gr.Row(equal_height=False, elem_classes=["edit-row"]):
                report_what = gr.Radio(
                    [("Picture", "picture"), ("Text", "text")], value="picture", label="Something wrong with this page?", scale=1, min_width=180
                )
                report_reason = gr.Textbox("", label="What is wrong?", placeholder="e.g. 'the picture is scary'", max_length=500, scale=3)
                report = gr.Button("Report this page", elem_id="report-button", variant="stop", scale=1, min_width=140)
            with gr.Row(equal_height=False, elem_classes=["edit-row"]):
                more_pages = gr.Number(value=2, minimum=1, maximum=max_pages, precision=0, label="Pages to add", scale=1, min_width=140)
                add = gr.Button("Add pages", elem_id="add-pages-button", scale=1, min_width=140)
                gr.Markdown("Or make a fresh take from the same photo and options; both versions are kept.", elem_classes=["edit-note"])
                another = gr.Button("Another version", elem_id="another-version-button", scale=1, min_width=140)

        story_id = gr.State(None)
        versions = gr.State([])
        outputs = [progress, book_area, title, cover, gallery, reader, result, book_file, qr, link, page_choice, editing, story_id, versions, version_choice]

        generate.click(
            callbacks.generate,
            inputs=[photo, pages, language, style, audience, tone, idea, character_names, bilingual, narrate, likeness, brand_name, brand_voice,
                    brand_message, logo, brand_primary_color, brand_secondary_color, brand_cta_url, brand_cta_text, print_size, crop_marks],
            outputs=outputs, api_name="generate", concurrency_limit=None, scroll_to_output=False, **QUIET,
        )
        photo.upload(callbacks.check_photo, inputs=[photo], outputs=[photo], api_visibility="private", concurrency_limit=None, **QUIET)
        logo.upload(callbacks.check_photo, inputs=[logo], outputs=[logo], api_visibility="private", concurrency_limit=None, **QUIET)
        gallery.select(_selected_page, outputs=[page_choice], api_visibility="private", **QUIET)
        repaint.click(
            callbacks.regenerate_picture, inputs=[story_id, page_choice, versions], outputs=outputs, api_name="regenerate_picture",
            concurrency_limit=None, **QUIET,
        )
        rewrite.click(
            callbacks.rewrite_text, inputs=[story_id, page_choice, instruction, versions], outputs=outputs, api_name="rewrite_text",
            concurrency_limit=None, **QUIET,
        )
        report.click(
            callbacks.report_page, inputs=[story_id, page_choice, report_what, report_reason, versions], outputs=outputs, api_name="report_page",
            concurrency_limit=None, **QUIET,
        )
        add.click(callbacks.add_pages, inputs=[story_id, more_pages, versions], outputs=outputs, api_name="add_pages", concurrency_limit=None, **QUIET)
        another.click(callbacks.another_version, inputs=[story_id, versions], outputs=outputs, api_name="another_version", concurrency_limit=None, **QUIET)
        stop.click(callbacks.cancel, inputs=[story_id, versions], outputs=outputs, api_name="cancel", concurrency_limit=None, **QUIET)
        go_on.click(callbacks.resume, inputs=[story_id, versions], outputs=outputs, api_name="resume", concurrency_limit=None, **QUIET)
        version_choice.input(
            callbacks.show_version, inputs=[version_choice, versions], outputs=outputs, api_visibility="private", concurrency_limit=None, **QUIET
        )
    return blocks


def _note_copies(blocks: gr.Blocks, copies: GradioCopies) -> None:
    """Have every component tell `copies` which story's file each copy it puts in Gradio's cache came from."""
    for block in blocks.blocks.values():
        copy_sync, copy_async = block.move_resource_to_block_cache, block.async_move_resource_to_block_cache

        def noted(source: str | Path | None, _copy=copy_sync) -> str | None:
            copy = _copy(source)
            copies.note(source, copy)
            return copy

        async def noted_async(source: str | Path | None, _copy=copy_async) -> str | None:
            copy = await _copy(source)
            copies.note(source, copy)
            return copy

        block.move_resource_to_block_cache = noted  # type: ignore[method-assign, assignment]
        block.async_move_resource_to_block_cache = noted_async  # type: ignore[method-assign, assignment]


def mount_ui(app: FastAPI, state: WebState, *, copies: GradioCopies | None = None) -> FastAPI:
    """Mount the studio at /. With an API key set, the page asks for it (any user name, the key as password).

    With `copies`, each copy of a story's file Gradio makes is noted, so `BookFilesGuard` can refuse it once the
    book expires or the story is deleted.
    """
    settings = state.settings
    key = settings.api_key.get_secret_value() if settings.api_key else None
    auth = (lambda _user, password: secrets.compare_digest(password.encode(), key.encode())) if key else None
    allowed = [str((settings.data_dir / "artifacts").resolve()), str(SAMPLES_DIR), str(render.PENDING_PICTURE.parent)]
    blocks = build_ui(state)
    if copies is not None:
        copies.forget_missing()
        _note_copies(blocks, copies)
    return gr.mount_gradio_app(
        app, blocks, path="/", theme=look.theme(), css=look.CSS, allowed_paths=allowed,
        auth=auth, auth_message="Enter this server's API key as the password." if key else None,
        max_file_size=settings.max_upload_bytes * 2, footer_links=["api"], show_error=False,
    )

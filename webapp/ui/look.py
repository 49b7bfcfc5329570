"""The studio page's theme, style sheet and fixed wording."""

from __future__ import annotations

import gradio as gr

TITLE = "Fabula — photo to storybook"
INTRO = (
    "# Fabula\n"
    "Turn one photo into an illustrated storybook: Fabula looks at your photo, writes a story around it in the "
    "language you choose, paints every page, and binds a PDF and an EPUB; it can read the book aloud, and a QR code "
    "opens it on a phone."
)
QR_CAPTION = "Scan to read on a phone"
DEMO_BANNER = (
    "Demo mode: tiny random models. Their text does not pass Fabula's rules, so the story is Fabula's safe "
    "fallback text, and the pictures are noise; the flow is real. The offline profile writes real words."
)
OFFLINE_BANNER = (
    "Offline mode: the story is written by a real small language model (SmolLM2-135M-Instruct), and each page's "
    "picture is **your photo restyled** in the chosen style (framed and coloured after the page's scene), not "
    "painted from the text: no painting weights are on this machine. Get them with `fabula models pull cpu`."
)

AUDIENCE_LABELS = {
    "young-children": "Young children (3–5)",
    "children": "Children (6–9)",
    "preteens": "Preteens (10–12)",
    "teens": "Teenagers",
    "adults": "Adults",
}
TONES = ["warm and whimsical", "adventure", "bedtime story", "funny", "mystery", "heartfelt", "spooky but kind"]
# The PDF's page size, as the print-size option's values (webapp.book.print_sizes.PrintSize) with words a reader knows.
PRINT_SIZE_CHOICES = [
    ("Screen (square, no bleed)", "screen"), ("Print: 8.5 × 8.5 in square", "square-8.5"), ("Print: 8 × 10 in", "8x10"),
    ("Print: A4", "a4"), ("Print: US Letter", "letter"),
]


def address_note(warning: str) -> str:
    """The server's address warning (`public_address`), shown beside the QR code it concerns."""
    return f"**A phone cannot open this code yet.** {warning}"


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="orange", secondary_hue="amber", neutral_hue="stone", radius_size="lg")


CSS = """
.gradio-container { max-width: 1180px !important; margin: 0 auto !important; }
#intro h1 { margin-bottom: 0.2em; }
#intro p { font-size: 1.05rem; color: var(--body-text-color-subdued); max-width: 60em; }
#demo-banner { background: #fff4d6; border: 1px solid #f2b134; border-radius: 10px; padding: 10px 14px;
  color: #6b4300; font-weight: 600; }
.section-heading h3 { margin: 0.2em 0 0.1em; }
#sample-credits, #sample-credits p { font-size: 0.75rem !important; color: var(--body-text-color-subdued); line-height: 1.3; }
#generate-button { font-size: 1.1rem; }
.fabula-progress { padding: 6px 2px; }
.fabula-progress ol.steps { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; list-style: none; padding: 0; margin: 0 0 10px; }
.fabula-progress li.step { margin: 0 !important; padding: 4px 12px; border-radius: 999px; font-size: 0.9rem;
  background: var(--neutral-100); color: var(--neutral-500); border: 1px solid var(--neutral-200); }
.fabula-progress li.step.done { background: #e7f6ea; color: #1c6b33; border-color: #b5dfc0; }
.fabula-progress li.step.done::before { content: "✓ "; }
.fabula-progress li.step.current { background: var(--primary-100); color: var(--primary-800); border-color: var(--primary-300); font-weight: 600; }
.fabula-progress li.step.stopped { background: #fde8e8; color: #9b1c1c; border-color: #f5b5b5; font-weight: 600; }
.fabula-progress .bar { height: 10px; border-radius: 999px; background: var(--neutral-200); overflow: hidden; }
.fabula-progress .bar span { display: block; height: 100%; background: var(--primary-500); transition: width 0.4s ease; }
.fabula-progress[data-status="done"] .bar span { background: #2f9e55; }
.fabula-progress[data-status="failed"] .bar span { background: #d64545; }
.fabula-progress p.sentence { margin: 8px 0 0; font-size: 1rem; }
.fabula-reader { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px; }
.fabula-reader article { border: 1px solid var(--neutral-200); border-radius: 10px; padding: 10px 14px; background: var(--background-fill-secondary); }
.fabula-reader h4 { margin: 0 0 4px; font-size: 0.85rem; color: var(--body-text-color-subdued); text-transform: uppercase; letter-spacing: 0.04em; }
.fabula-reader p { margin: 0; line-height: 1.5; overflow-wrap: anywhere; }
.fabula-reader p.original { margin-top: 6px; font-style: italic; color: var(--body-text-color-subdued); }
#book-title h2 { margin: 0.1em 0 0.1em; font-size: 1.6rem; overflow-wrap: anywhere; }
#book-title p.original-title { margin: 0 0 0.6em; font-style: italic; color: var(--body-text-color-subdued); }
#book-link p { margin: 4px 0; font-size: 0.9rem; }
#book-link p.formats { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
#book-link a.format-link { display: inline-block; padding: 6px 14px; border-radius: 999px; border: 1px solid var(--primary-300);
  background: var(--primary-50); color: var(--primary-800); font-weight: 600; text-decoration: none; }
#book-link a.format-link:hover { background: var(--primary-100); }
#book-link a.reader-link { background: var(--primary-500); border-color: var(--primary-500); color: white; }
#book-link p.narration-note { color: var(--body-text-color-subdued); }
#book-link .print-check { margin-top: 0.5em; font-size: 0.9em; }
#book-link .print-check.not-ready strong { color: var(--error-text-color); }
#book-link a.share-link { font-family: var(--font-mono); font-size: 0.85rem; word-break: break-all; }
#address-warning { background: #fff4d6; border: 1px solid #f2b134; border-radius: 8px; padding: 6px 10px; }
#address-warning p { font-size: 0.8rem; color: #6b4300; margin: 0; line-height: 1.35; }
/* Gradio 6 gallery internals: the grid scrolls inside its box, and captions stay on one line; Fabula's gallery
   is as tall as its rows, and a long caption ("Page 3 · calm placeholder picture") wraps instead of hiding. */
#pages-gallery .grid-wrap { overflow-y: visible; }
#pages-gallery .caption-label { white-space: normal; }
#cover-image img { width: 100%; height: 100%; object-fit: contain; }
#book-qr img { image-rendering: pixelated; }
#qr-caption p { text-align: center; font-size: 0.85rem; color: var(--body-text-color-subdued); margin: 2px 0 0; }
.edit-row { align-items: flex-end !important; }
.edit-row button { min-height: 42px; margin-bottom: 4px; }
.edit-note p { font-size: 0.9rem; color: var(--body-text-color-subdued); margin: 0 0 10px; }
#empty-book p { color: var(--body-text-color-subdued); }
"""

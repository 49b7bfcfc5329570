"""One language per book, never a mix: every piece is translated into the language the reader chose, and a piece
the model cannot translate within the rules (after its tries) turns the whole book to English, said plainly in
the studio, the book's metadata, the CLI and the API (`Steps.LANGUAGE`)."""

from __future__ import annotations

import logging

from webapp.jobs.ledger import JobLedger
from webapp.jobs.progress import Steps, WrittenPiece
from webapp.jobs.seeds import book_seed, seed_for
from webapp.story.languages import find_language
from webapp.story.options import StoryOptions
from webapp.story.writer import StoryWriter

logger = logging.getLogger(__name__)


class BookLanguage:
    def __init__(self, ledger: JobLedger, writer: StoryWriter) -> None:
        self.ledger, self.store, self.writer = ledger, ledger.store, writer

    def of(self, job_id: str, options: StoryOptions) -> str:
        """The language the book is being written in (the chosen one, unless the model could not write it)."""
        return "en" if options.language == "en" else self.store.progress(job_id).language(options.language)

    async def translated(
        self, job_id: str, key: str | int, text: str, options: StoryOptions, names: tuple[str, ...] | list[str], *, what: str = "page", redo: int = 0,
    ) -> str:
        """`text` (a page, or the title) in the book's language, saved under `key`; a redo (a rewritten page) is
        translated afresh with its own seed."""
        saved = self.store.progress(job_id).translated(key) if redo == 0 else None
        if self.of(job_id, options) != "en" and saved is None:
            written = await self.writer.translate(text, options.language, names, what=what, seed=seed_for(book_seed(job_id, options), redo))
            if written.fallback:
                self.write_in_english(job_id, options.language)
                return text
            saved = WrittenPiece(text=written.text)
            self.store.save_step(job_id, Steps.translated(key), saved.model_dump())
        return saved.text if saved and self.of(job_id, options) != "en" else text

    def write_in_english(self, job_id: str, requested: str) -> None:
        """Record, once, that the model could not write `requested`: the book is made in English and says so."""
        if self.store.progress(job_id).language_note:
            return
        note = f"This model could not write {find_language(requested).name}; the book is in English."
        logger.warning("the model could not write the book's language; making it in English", extra={"fields": {"language": requested}})
        self.store.save_step(job_id, Steps.LANGUAGE, {"requested": requested, "used": "en", "note": note})
        self.ledger.say(self.ledger.record(job_id), note)

"""Reading a page aloud: sentence by sentence through the narrate service, joined into one MP3 per page.

Each sentence is one speech request (they run concurrently; the service caps its own work), so every sentence's
start and end in the page's clip is known exactly: the reader highlights by it, the EPUB's media overlays pair
each sentence with its clip range. A page's narration is saved with a digest of the text it speaks, so a page
whose text changed (a rewrite, a new translation) is narrated again and every other page is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from shared.clients import NarrateClient
from shared.errors import InvalidRequest
from webapp.book.audio import encode, join_clips
from webapp.book.narration import PageNarration, SpokenSentence
from webapp.book.sentences import split_sentences
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.progress import Artifacts, NarrationNote, Steps
from webapp.jobs.store import JobStore

logger = logging.getLogger(__name__)

SENTENCE_GAP_S = 0.3
MAX_CONCURRENT_SENTENCES = 8


def text_digest(text: str, voice: str, language: str) -> str:
    return hashlib.sha256(f"{voice}\n{language}\n{text}".encode()).hexdigest()[:16]


class PageNarrator:
    """Narrates pages of a job and keeps what it made (artifacts and the `narration:N` steps)."""

    def __init__(
        self, client: NarrateClient, *, store: JobStore, artifacts: ArtifactStore, voice: str,
        on_saved: Callable[[str, int], None] | None = None,
    ) -> None:
        """`on_saved(job_id, page)` is called after each page's narration is saved (the ledger counts ready pages)."""
        self.client = client
        self.store = store
        self.artifacts = artifacts
        self.voice = voice
        self.on_saved = on_saved
        self._sentences = asyncio.Semaphore(MAX_CONCURRENT_SENTENCES)

    def saved(self, job_id: str, page: int, text: str, language: str) -> PageNarration | None:
        """The page's narration when it speaks exactly this text and its audio is still there."""
        data = self.store.progress(job_id).narration_data(page)
        if not data or data.get("digest") != text_digest(text, self.voice, language):
            return None
        narration = PageNarration.model_validate(data["narration"])
        return narration if self.artifacts.exists(job_id, narration.audio_name) else None

    async def narrate(self, job_id: str, page: int, text: str, language: str) -> PageNarration:
        saved = self.saved(job_id, page, text, language)
        if saved is not None:
            return saved
        sentences = split_sentences(text, language) or [text.strip()]
        clips = await asyncio.gather(*(self._speak(sentence, language) for sentence in sentences))
        wav, spans = await asyncio.to_thread(join_clips, [clip.audio for clip in clips], SENTENCE_GAP_S)
        mp3 = await asyncio.to_thread(encode, wav, "mp3")
        name = Artifacts.audio(page)
        self.artifacts.write(job_id, name, mp3)
        narration = PageNarration(
            page=page, audio_name=name, audio_format="mp3", duration=spans[-1][1] if spans else 0.0, voice=clips[0].voice if clips else "",
            sentences=[
                SpokenSentence(text=sentence, begin=round(begin, 3), end=round(end, 3)) for sentence, (begin, end) in zip(sentences, spans, strict=True)
            ],
        )
        self.store.save_step(
            job_id, Steps.narration(page), {"digest": text_digest(text, self.voice, language), "text": text, "narration": narration.model_dump()}
        )
        if self.on_saved is not None:
            self.on_saved(job_id, page)
        return narration

    async def read_aloud(self, job_id: str, page: int, text: str, language: str) -> None:
        """Narrate one page (0: the title); a language (or a script) with no voice leaves the book silent and says why,
        once, in the `narration_note` step."""
        if not text.strip():
            self.store.delete_step(job_id, Steps.narration(page))  # nothing to say, and no older words either
            return
        try:
            await self.narrate(job_id, page, text, language)
        except InvalidRequest as exc:
            if exc.param not in ("language", "voice", "input"):
                raise
            # A narration saved earlier speaks other words, or in another language (the book turned to English).
            self.store.delete_step(job_id, Steps.narration(page))
            if not self.store.progress(job_id).narration_note:
                logger.info("no voice for this book", extra={"fields": {"reason": exc.message}})
                self.store.save_step(job_id, Steps.NARRATION_NOTE, NarrationNote(message=exc.message, param=exc.param, language=language).model_dump())

    def forget_stale(self, job_id: str, language: str) -> None:
        """Drop every saved narration that does not speak its page's current words in `language` (one that could
        not be read again: the book turned to English and that page had no voice), so no old words are ever kept."""
        progress = self.store.progress(job_id)
        words = progress.words if progress.plan is not None else None
        if words is None:
            return
        texts = {0: words.title, **dict(enumerate(words.pages, start=1))}
        for page in progress.narrations:
            if page not in texts or self.saved(job_id, page, texts[page], language) is None:
                self.store.delete_step(job_id, Steps.narration(page))

    def unread(self, job_id: str, language: str) -> dict[int, str]:
        """The pages (0: the title) whose saved narration does not speak their current words (after an edit, a
        resume); none when the language has no voice at all. A note said of another language (the one chosen,
        before the model was found not to write it) is dropped: it is not this book's."""
        progress = self.store.progress(job_id)
        note = progress.narration_problem
        if note and note.language not in (None, language):
            self.store.delete_step(job_id, Steps.NARRATION_NOTE)
            note = None
        words = progress.words if progress.plan is not None else None
        if words is None or (note and note.param in ("language", "voice")):
            return {}
        texts = {0: words.title, **dict(enumerate(words.pages, start=1))}
        return {page: text for page, text in texts.items() if self.saved(job_id, page, text, language) is None}

    async def _speak(self, sentence: str, language: str):  # -> SpeechResult
        async with self._sentences:
            return await self.client.speech(sentence, voice=self.voice, language=language, response_format="wav")

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

from shared.clients import NarrateClient
from webapp.book.audio import encode, join_clips
from webapp.book.narration import PageNarration, SpokenSentence
from webapp.book.sentences import split_sentences
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.progress import Artifacts, Steps
from webapp.jobs.store import JobStore

logger = logging.getLogger(__name__)

SENTENCE_GAP_S = 0.3
MAX_CONCURRENT_SENTENCES = 8


def text_digest(text: str, voice: str, language: str) -> str:
    return hashlib.sha256(f"{voice}\n{language}\n{text}".encode()).hexdigest()[:16]


class PageNarrator:
    """Narrates pages of a job and keeps what it made (artifacts and the `narration:N` steps)."""

    def __init__(self, client: NarrateClient, *, store: JobStore, artifacts: ArtifactStore, voice: str) -> None:
        self.client = client
        self.store = store
        self.artifacts = artifacts
        self.voice = voice
        self._sentences = asyncio.Semaphore(MAX_CONCURRENT_SENTENCES)

    def saved(self, job_id: str, page: int, text: str, language: str) -> PageNarration | None:
        """The page's narration when it speaks exactly this text and its audio is still there."""
        data = self.store.steps(job_id).get(Steps.narration(page))
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
            sentences=[SpokenSentence(text=sentence, begin=round(begin, 3), end=round(end, 3)) for sentence, (begin, end) in zip(sentences, spans)],
        )
        self.store.save_step(
            job_id, Steps.narration(page), {"digest": text_digest(text, self.voice, language), "text": text, "narration": narration.model_dump()}
        )
        return narration

    async def _speak(self, sentence: str, language: str):  # -> SpeechResult
        async with self._sentences:
            return await self.client.speech(sentence, voice=self.voice, language=language, response_format="wav")


def narrations(store: JobStore, job_id: str) -> dict[int, PageNarration]:
    """The saved narrations that speak the book's current text, by page (0 is the title): a page whose text changed
    since it was read aloud (a rewrite) has none until it is read again, so no old words are ever played."""
    progress = store.progress(job_id)
    translation = progress.translation
    if translation is None:
        return {}
    texts = {0: translation.title, **dict(enumerate(translation.pages, start=1))}
    found: dict[int, PageNarration] = {}
    for page, narration in progress.narrations.items():
        spoken = (progress.narration_data(page) or {}).get("text")
        if page in texts and spoken == texts[page]:
            found[page] = narration
    return found

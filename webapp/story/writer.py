"""The writer: every piece of a book asked for in plain words, checked by the rules, regenerated, or replaced.

The outline (title, the characters' looks, one beat per page) is streamed and read line by line, so the pipeline
can paint page 1 while the model is still planning page 8 (`on_beat`). Whatever the plan lacks or gets wrong is
asked again more simply, piece by piece (a title, one page's beat), and what still breaks the rules is replaced by
a safe fallback (`fallbacks`). Each page's prose and each translation is its own call, checked the same way.
Nothing in here is tuned to one model: the prompts are plain instructions, the budgets come from the model's
context, and the rules judge the text, not the model.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import openai

from shared.blocked_words import remove_blocked
from shared.errors import UpstreamError
from shared.logs import log_fields
from webapp.story import fallbacks, language_check, prompts
from webapp.story.audience_words import audience_words
from webapp.story.chat import ChatCaller, Sampling, StoryWriterError
from webapp.story.languages import find_language
from webapp.story.options import StoryOptions
from webapp.story.outline_lines import LineSplitter, read_line, read_looks
from webapp.story.plan import (
    Character,
    LengthBudget,
    OutlineDraft,
    OutlinePage,
    PlanPage,
    StoryOutline,
    StoryPlan,
)
from webapp.story.prompts import Brief, Messages
from webapp.story.rules import (
    Expectations,
    Piece,
    Verdict,
    Violation,
    best,
    check,
    content_words,
    is_language,
    tidy,
    words,
)

logger = logging.getLogger(__name__)

__all__ = ["StoryWriter", "StoryWriterError", "Written", "pick_names"]

# Names for a book whose reader gave none: short, friendly, easy in every language.
DEFAULT_NAMES = ("Pip", "Mia", "Leo", "Luna", "Kit", "Nora", "Sam", "Ruby", "Theo", "Ada")
OnBeat = Callable[[OutlineDraft, int], Awaitable[None]]
# A plan whose first lines are none of title, characters or a numbered beat is not coming in the asked form.
STRAY_LINES = 3


@dataclass
class _PlanReading:
    """How far the streamed plan has been read: the page whose beat comes next and what came before it."""

    brief: Brief
    pages: int
    draft: OutlineDraft
    expect: Expectations
    settle: Callable[[int, str, bool], Awaitable[None]]
    next_page: int
    looks_text: str = ""
    stray: int = 0  # lines that are neither title, characters nor a numbered beat, before the first beat
    seen_lines: int = 0
    title_next: bool = False  # "Title:" alone on its line: the title is the next line
    accepted: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.next_page > self.pages


@dataclass(frozen=True)
class Written:
    """One piece as it goes into the book; `fallback` says the model could not write it within the rules."""

    text: str
    fallback: bool = False


def pick_names(options: StoryOptions, seed: int) -> tuple[str, ...]:
    return tuple(options.character_names) or (DEFAULT_NAMES[seed % len(DEFAULT_NAMES)],)


class StoryWriter:
    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        budget: LengthBudget,
        attempts: int = 3,
        blocked_words: tuple[str, ...] = (),
        audience_words: dict[str, list[str]] | None = None,
        sampling: Sampling | None = None,
    ) -> None:
        self.chat = ChatCaller(client, model=model, sampling=sampling)
        self.model = model
        self.budget = budget
        self.attempts = max(1, attempts)
        self.blocked_words = tuple(word.lower() for word in blocked_words if word.strip())
        self.audience_words = audience_words  # FABULA_AUDIENCE_WORDS; None: the defaults in `audience_words`

    # ---- the brief ------------------------------------------------------------------------------------------
    def brief(self, caption: str, options: StoryOptions, names: tuple[str, ...]) -> Brief:
        """The shared material of one book; a caption that is not language (a tiny or failing vision model) is left
        out, so the story leans on the idea and the options."""
        return Brief(options=options, names=names, photo=caption if is_language(caption) else None, idea=fallbacks.short_idea(options.idea, 16))

    def expectations(self, brief: Brief, **changes: Any) -> Expectations:
        options = brief.options
        idea_words = tuple(content_words(options.idea or "")[:8])
        asked = " ".join(filter(None, [options.idea, options.brand.message if options.brand else None, options.brand.name if options.brand else None]))
        kept_out = audience_words(options.audience, self.audience_words, allowed_text=asked)
        base = Expectations(
            names=brief.names, idea_words=idea_words, blocked_words=self.blocked_words, max_chars=self.budget.page_text, audience_words=kept_out,
        )
        return replace(base, **changes)

    def facts(self, brief: Brief) -> fallbacks.StoryFacts:
        return fallbacks.StoryFacts(names=brief.names, idea=fallbacks.short_idea(brief.options.idea))

    # ---- the outline ----------------------------------------------------------------------------------------
    async def outline(
        self, caption: str, options: StoryOptions, *, seed: int = 0, draft: OutlineDraft | None = None, on_beat: OnBeat | None = None,
    ) -> StoryOutline:
        """The whole outline; `on_beat(draft, page)` runs as each page's beat is settled (in any order), and the
        draft it gets is the outline so far (save it to resume from it)."""
        names = tuple(character.name for character in draft.characters) if draft and draft.characters else pick_names(options, seed)
        brief = self.brief(caption, options, names)
        draft = draft.model_copy(deep=True) if draft else OutlineDraft()
        pages = options.pages

        async def settle(page: int, text: str, fallback: bool) -> None:
            draft.beats[page] = text
            if fallback:
                draft.fallbacks.append(f"beat:{page}")
            if on_beat is not None:
                await on_beat(draft, page)

        if not draft.beats:
            opening = self._opening(brief, pages)
            if opening is not None:
                # Page 1 is the photo's own scene: its picture and its prose start now, beside the plan.
                draft.opening = True
                draft.characters = self._characters(brief, {})
                await settle(1, opening, False)
            await self._stream_outline(brief, pages, seed, draft, settle)
        if draft.characters is None:
            draft.characters = self._characters(brief, {})
        missing = [page for page in range(1, pages + 1) if page not in draft.beats]
        title_task = asyncio.ensure_future(self._title(brief, draft, seed)) if draft.title is None else None
        # Each missing beat sees the beats around it that exist now; filled concurrently.
        known = dict(draft.beats)

        async def fill(page: int) -> None:
            written = await self._beat(brief, page, pages, known, seed)
            await settle(page, written.text, written.fallback)

        await asyncio.gather(*(fill(page) for page in missing))
        if title_task is not None:
            written = await title_task
            draft.title = written.text
            if written.fallback:
                draft.fallbacks.append("title")
        beats = [draft.beats[page] for page in range(1, pages + 1)]
        return StoryOutline(
            title=draft.title or remove_blocked(fallbacks.title(self.facts(brief)), self.blocked_words),
            cover_prompt=beats[0],
            characters=draft.characters,
            pages=[OutlinePage(beat=beat, scene_prompt=beat) for beat in beats],
            fallbacks=draft.fallbacks,
        )

    def _opening(self, brief: Brief, pages: int) -> str | None:
        """The photo's description as page 1's scene, when it reads as language and the book has pages after it."""
        if brief.photo is None or pages < 2:
            return None
        scene = tidy(brief.photo, Piece.beat, max_chars=self.budget.beat, max_sentences=1)
        return scene if len(words(scene)) >= 4 else None

    async def _stream_outline(self, brief: Brief, pages: int, seed: int, draft: OutlineDraft, settle: Callable[[int, str, bool], Awaitable[None]]) -> None:
        messages = prompts.outline_messages(brief, pages, opening=draft.beats.get(1) if draft.opening else None)
        wanted = 24 + 24 * len(brief.names) + pages * (self.budget.beat // 4 + 8)
        expect = self.expectations(brief, instructions=messages[-1]["content"], material=" ".join(brief.material()))
        reading = _PlanReading(brief, pages, draft, expect, settle, next_page=2 if draft.opening else 1)
        splitter = LineSplitter()
        try:
            async with aclosing(self.chat.stream(messages, max_tokens=wanted, seed=seed)) as deltas:
                async for delta in deltas:
                    for line in splitter.push(delta):
                        await self._read_plan_line(line, reading)
                    if reading.complete:
                        break  # the plan is complete: stop the model writing past it
                    if reading.stray >= STRAY_LINES:
                        log_fields(logger, "the model is not writing the plan in the asked form; asking for it piece by piece", level=logging.INFO)
                        break
            for line in splitter.flush():
                await self._read_plan_line(line, reading)
        except UpstreamError as exc:
            if not exc.transient:
                raise
            # A broken stream loses only the beats not read yet; they are asked for one by one.
            log_fields(logger, "the outline stream broke; the missing pieces are asked for one by one", error=exc.message, level=logging.WARNING)

    async def _read_plan_line(self, line_text: str, reading: _PlanReading) -> None:
        """One line of the streamed plan: the title, the characters' looks, the next page's beat, or a stray line."""
        line = read_line(line_text)
        if line.kind == "title" and not line.text:
            reading.title_next = True
            return
        if not line.text:
            return
        reading.seen_lines += 1
        if line.kind == "title" or (line.kind == "other" and (reading.seen_lines == 1 or reading.title_next)):
            reading.title_next = False
            self._read_title(line.text, reading)
        elif line.kind == "other":
            reading.stray += 0 if reading.accepted else 1
        elif line.kind == "characters":
            reading.looks_text = line.text
        elif line.kind == "beat":
            await self._read_beat(line.text, line.number, reading)

    def _read_title(self, text: str, reading: _PlanReading) -> None:
        """The plan's title, unless the draft has one already (a resumed book) or it breaks the rules."""
        if reading.draft.title is not None:
            return
        expect = replace(reading.expect, opening=reading.draft.beats.get(1, ""))
        verdict = check(tidy(text, Piece.title, max_chars=self.budget.title), Piece.title, expect)
        if verdict.usable:
            reading.draft.title = verdict.text

    async def _read_beat(self, text: str, number: int | None, reading: _PlanReading) -> None:
        """The next page's beat; a beat that breaks the rules leaves its page to be asked for on its own."""
        if reading.complete or (number is not None and number < reading.next_page):
            return  # past the plan's end, or a page already settled (the opening)
        draft = reading.draft
        looks = read_looks(reading.looks_text, reading.brief.names)
        if draft.characters is None or (looks and not reading.accepted):
            draft.characters = self._characters(reading.brief, looks)
        verdict = self._check_beat(text, reading.expect, reading.accepted)
        page = reading.next_page
        reading.next_page += 1
        if verdict.usable:
            reading.accepted.append(verdict.text)
            await reading.settle(page, verdict.text, False)

    def _check_beat(self, text: str, expect: Expectations, accepted: list[str]) -> Verdict:
        verdict = check(tidy(text, Piece.beat, max_chars=self.budget.beat, max_sentences=2), Piece.beat, expect)
        mine = {word.lower() for word in words(verdict.text)}
        for earlier in accepted:
            theirs = {word.lower() for word in words(earlier)}
            if mine and len(mine & theirs) / len(mine | theirs) >= 0.7:
                verdict.violations.append(_duplicate())
                break
        return verdict

    def _characters(self, brief: Brief, looks: dict[str, str]) -> list[Character]:
        characters = []
        for index, name in enumerate(brief.names):
            look = looks.get(name, "")
            if look:
                verdict = check(tidy(look, Piece.look, max_chars=self.budget.character_description), Piece.look, self.expectations(brief))
                look = verdict.text if verdict.usable else ""
            if not look and index == 0 and brief.photo:
                look = tidy(brief.photo, Piece.look, max_chars=self.budget.character_description)
            characters.append(Character(name=name[: self.budget.character_name], description=look))
        return characters

    async def _beat(self, brief: Brief, page: int, pages: int, known: dict[int, str], seed: int) -> Written:
        messages = prompts.beat_messages(brief, page, pages, known)
        expect = self.expectations(brief, material=" ".join([*brief.material(), *known.values()]))
        tokens = self.budget.beat // 3 + 16
        verdict = await self._attempts(
            Piece.beat, [messages] * min(2, self.attempts), expect, tokens, seed + 101 * page, max_sentences=2, max_chars=self.budget.beat,
        )
        if verdict is not None:
            return Written(verdict.text)
        return self._fallback("beat", page, fallbacks.beat(page, pages, self.facts(brief)))

    async def _title(self, brief: Brief, draft: OutlineDraft, seed: int) -> Written:
        beats = [draft.beats[page] for page in sorted(draft.beats)]
        messages = prompts.title_messages(brief, beats)
        expect = self.expectations(brief, material=" ".join([*brief.material(), *beats]), opening=beats[0] if beats else "")
        tokens = self.budget.title // 3 + 8
        verdict = await self._attempts(Piece.title, [messages] * min(2, self.attempts), expect, tokens, seed + 7, max_chars=self.budget.title)
        if verdict is not None:
            return Written(verdict.text)
        return self._fallback("title", 0, fallbacks.title(self.facts(brief)))

    # ---- pages ----------------------------------------------------------------------------------------------
    async def write_page(self, brief: Brief, title: str, beats: dict[int, str], page: int, pages: int, *, seed: int = 0) -> Written:
        """One page's prose from its beat, with the plan around it; the opening page must keep the names and the idea."""
        full = prompts.page_messages(brief, title, beats, page, pages)
        simple = prompts.simple_page_messages(brief, beats[page])
        variants = [full, simple, full, simple][: self.attempts]
        material = " ".join([*brief.material(), title, *beats.values()])
        expect = self.expectations(brief, material=material, must_keep=page == 1, book_title=title)
        verdict = await self._attempts(Piece.page, variants, expect, self._page_tokens(brief), seed + 1009 * page, max_sentences=brief.sentences[1] + 1)
        if verdict is not None:
            return Written(verdict.text)
        return self._fallback("page", page, fallbacks.page_text(beats[page], page, pages, self.facts(brief)))

    def _page_tokens(self, brief: Brief) -> int:
        return min(self.budget.page_text // 3, 28 * (brief.sentences[1] + 1)) + 16

    async def translate(self, text: str, language: str, names: tuple[str, ...] | list[str], *, what: str = "page", seed: int = 0) -> Written:
        """One text in the book's language, checked by the language identifier as well as the rules; the English
        stays (and is marked a fallback) when no translation passes, and the caller decides what the book does."""
        if language == "en" or not text.strip():
            return Written(text)
        await asyncio.to_thread(language_check.warm_up)  # the identifier loads once, off the event loop
        messages = prompts.translate_messages(text, language, names, what=what)
        expect = Expectations(
            names=tuple(names), blocked_words=self.blocked_words, source=text, script=find_language(language).script, language=language,
            max_chars=self.budget.page_text * 3, instructions=messages[-1]["content"], material=text,
        )
        wanted = min(2 * len(text) // 3 + 32, self.budget.page_text)
        verdict = await self._attempts(Piece.translation, [messages] * min(2, self.attempts), expect, wanted, seed + 4099, max_chars=self.budget.page_text * 3)
        if verdict is not None:
            return Written(verdict.text)
        return self._fallback("translation", 0, text)

    # ---- edits ----------------------------------------------------------------------------------------------
    async def rewrite_page(self, plan: StoryPlan, options: StoryOptions, caption: str, page: int, instruction: str | None, *, seed: int = 0) -> Written:
        brief = self.brief(caption, options, tuple(c.name for c in plan.characters))
        texts = [item.text for item in plan.pages]
        messages = prompts.rewrite_messages(brief, plan.title, texts, page, instruction)
        simple = prompts.simple_page_messages(brief, plan.pages[page - 1].scene_prompt)
        expect = self.expectations(brief, material=" ".join([*brief.material(), plan.title, *texts, instruction or ""]))
        verdict = await self._attempts(
            Piece.page, [messages, simple][: self.attempts], expect, self._page_tokens(brief), seed + 31 * page, max_sentences=brief.sentences[1] + 1,
        )
        if verdict is not None:
            return Written(verdict.text)
        return self._fallback("page", page, texts[page - 1])

    async def continue_story(self, plan: StoryPlan, options: StoryOptions, caption: str, more: int, *, seed: int = 0) -> list[PlanPage]:
        """`more` pages after the last: their beats (one streamed plan, gaps asked one by one), then their prose."""
        brief = self.brief(caption, options, tuple(c.name for c in plan.characters))
        texts = [item.text for item in plan.pages]
        total, first = len(texts) + more, len(texts) + 1
        messages = prompts.continue_messages(brief, plan.title, texts, more)
        expect = self.expectations(brief, instructions=messages[-1]["content"], material=" ".join([*brief.material(), *texts]))
        beats: dict[int, str] = {number: item.scene_prompt for number, item in enumerate(plan.pages, start=1)}
        accepted: list[str] = list(beats.values())
        splitter = LineSplitter()
        reply = await self.chat.complete(messages, max_tokens=more * (self.budget.beat // 3 + 8) + 16, seed=seed)
        for line_text in [*splitter.push(reply), *splitter.flush()]:
            line = read_line(line_text)
            number = line.number
            if line.kind == "beat" and number is not None and first <= number <= total and number not in beats:
                verdict = self._check_beat(line.text, expect, accepted)
                if verdict.usable:
                    beats[number] = verdict.text
                    accepted.append(verdict.text)
        for page in range(first, total + 1):
            if page not in beats:
                beats[page] = (await self._beat(brief, page, total, dict(beats), seed)).text
        written = await asyncio.gather(*(self.write_page(brief, plan.title, beats, page, total, seed=seed) for page in range(first, total + 1)))
        return [PlanPage(text=piece.text, scene_prompt=beats[page]) for page, piece in zip(range(first, total + 1), written, strict=True)]

    # ---- the loop every piece goes through -------------------------------------------------------------------
    async def _attempts(
        self, piece: Piece, variants: list[Messages], expect: Expectations, max_tokens: int, seed: int,
        *, max_chars: int | None = None, max_sentences: int | None = None,
    ) -> Verdict | None:
        """Ask each variant in turn (each with its own seed) until one breaks no rule; the best usable answer, or None."""
        verdicts: list[Verdict] = []
        for attempt, messages in enumerate(variants):
            reply = await self.chat.complete(messages, max_tokens=max_tokens, seed=_seed(seed, attempt))
            text = tidy(reply, piece, max_chars=max_chars or expect.max_chars, max_sentences=max_sentences)
            verdict = check(text, piece, replace(expect, instructions=messages[-1]["content"]) if not expect.instructions else expect)
            verdicts.append(verdict)
            if verdict.usable and not verdict.misses:
                return verdict
            log_fields(
                logger, "generated text broke the rules; asking again", piece=piece.value, attempt=attempt + 1,
                rules=[str(violation) for violation in verdict.violations][:4], level=logging.DEBUG,
            )
        chosen = best(verdicts)
        if chosen is None and self.blocked_words:
            chosen = _without_blocked(verdicts, piece, expect)
        return chosen

    def _fallback(self, piece: str, page: int, text: str) -> Written:
        """A safe text in the model's place; it too keeps clear of the blocked words (an operator's list may hold
        words the templates use)."""
        log_fields(logger, "using the safe fallback for a piece the model could not write within the rules", piece=piece, page=page, level=logging.WARNING)
        return Written(remove_blocked(text, self.blocked_words), fallback=True)


def _seed(seed: int, attempt: int) -> int:
    return zlib.crc32(f"{seed}:{attempt}".encode()) & 0x7FFFFFFF


def _duplicate() -> Violation:
    return Violation("duplicate", "it repeats another page's beat")


def _without_blocked(verdicts: list[Verdict], piece: Piece, expect: Expectations) -> Verdict | None:
    """When blocked words are all that stand in the way, the candidate with them removed."""
    for verdict in verdicts:
        if all(violation.rule == "blocked word" or not violation.hard for violation in verdict.violations):
            cleaned = check(remove_blocked(verdict.text, expect.blocked_words), piece, expect)
            if cleaned.usable:
                return cleaned
    return None

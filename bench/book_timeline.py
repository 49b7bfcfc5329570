"""When each piece of Fabula's book was asked for and done, in seconds from the job's submission (pure functions).

Two sources, both outside the pipeline: the moments the benchmark saw a page's picture and its (translated) text
saved (it checks at every event the job publishes), and, with the latency stand-ins, their call log (bench/
latency_services.py), which says when each call's simulated work ran and what it was about: an image's prompt, a
page call's beat, a translation's source, and for the streamed outline the text and the moment each line was sent.
A call is matched to its page through the job's saved outline and texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from bench.latency_services import InjectedCall
from webapp.jobs.pipeline import COVER
from webapp.story.outline_lines import read_line

# A picture prompt starts with its scene (the beat), unless the scene had to be shortened to fit CLIP's window.
MATCHING_PREFIX = 24


class Span(BaseModel):
    start: float
    end: float


class PageTimeline(BaseModel):
    """One page (0: the cover). `finished` is when its picture and its text in the book's language were both saved."""

    page: int
    beat: float | None = None
    picture: Span | None = None
    text: Span | None = None
    translation: Span | None = None
    picture_saved: float | None = None
    text_saved: float | None = None

    @property
    def finished(self) -> float | None:
        if self.picture_saved is None or (self.page != COVER and self.text_saved is None):
            return None
        return max(self.picture_saved, self.text_saved or 0.0)


class Timeline(BaseModel):
    caption: Span | None = None
    outline: Span | None = None
    title_translation: Span | None = None
    image_calls: list[Span] = []  # one per model call of the image service (a call paints a batch)
    pages: list[PageTimeline] = []

    def page(self, number: int) -> PageTimeline | None:
        return next((page for page in self.pages if page.page == number), None)


def build_timeline(
    calls: list[InjectedCall], started: float, steps: dict, saved: dict[int, dict[str, float]], pages: int,
) -> Timeline:
    """`calls`: the stand-ins' log of Fabula's run (empty with real services); `started`: the submission's
    `perf_counter()`; `steps`: the job's saved steps; `saved[page]`: {"picture": s, "text": s} from submission."""
    outline = steps.get("outline") or {}
    beats = {number: item["beat"] for number, item in enumerate(outline.get("pages", []), start=1)}
    title = outline.get("title", "")
    texts = {number: (steps.get(f"text:{number}") or {}).get("text") for number in range(1, pages + 1)}
    timeline = Timeline(pages=[PageTimeline(page=number, picture_saved=saved.get(number, {}).get("picture"),
                                            text_saved=saved.get(number, {}).get("text")) for number in [*range(1, pages + 1), COVER]])

    run = _Run(started=started, title=title, beats=beats, texts=texts)
    for call in sorted(calls, key=lambda call: call.started_at):
        _place_call(timeline, call, run)
    opening = timeline.page(1)
    if (steps.get("outline_draft") or {}).get("opening") and opening is not None and timeline.caption is not None:
        opening.beat = timeline.caption.end  # page 1 is the photo's own scene: settled when the caption came back
    return timeline


@dataclass(frozen=True)
class _Run:
    """What a call is matched against: the submission's moment and the job's saved title, beats and texts."""

    started: float
    title: str
    beats: dict[int, str]
    texts: dict[int, str | None]

    def span(self, call: InjectedCall) -> Span:
        return Span(start=call.started_at - self.started, end=call.finished_at - self.started)

    def widen(self, current: Span | None, call: InjectedCall) -> Span:
        """Regenerations of one piece: from the first call's start to the last one's end."""
        new = self.span(call)
        return new if current is None else Span(start=min(current.start, new.start), end=max(current.end, new.end))


def _place_call(timeline: Timeline, call: InjectedCall, run: _Run) -> None:
    """One logged call onto the timeline: the caption, a picture, the outline, a page's text or a translation."""
    if call.service == "caption":
        timeline.caption = run.span(call)
    elif call.service == "illustrate":
        _place_picture(timeline, call, run)
    elif call.name == "outline" and timeline.outline is None:
        timeline.outline = run.span(call)
        for number, moment in _beat_arrivals(call).items():
            if (entry := timeline.page(number)) is not None:
                entry.beat = moment - run.started
    elif call.name == "page":
        page = next((number for number, beat in run.beats.items() if beat == call.subject), None)
        if page is not None and (entry := timeline.page(page)) is not None:
            entry.text = run.widen(entry.text, call)
    elif call.name == "translation":
        _place_translation(timeline, call, run)


def _place_picture(timeline: Timeline, call: InjectedCall, run: _Run) -> None:
    page = _picture_page(call.subject, run.title, run.beats)
    if page is not None and (entry := timeline.page(page)) is not None:
        entry.picture = run.widen(entry.picture, call)
    # One model call paints a batch: its pictures share one entry.
    if not any(abs(existing.end - (call.finished_at - run.started)) < 1e-3 for existing in timeline.image_calls):
        timeline.image_calls.append(run.span(call))


def _place_translation(timeline: Timeline, call: InjectedCall, run: _Run) -> None:
    if run.title and call.subject == run.title:
        timeline.title_translation = run.widen(timeline.title_translation, call)
    page = next((number for number, text in run.texts.items() if text and text == call.subject), None)
    if page is not None and (entry := timeline.page(page)) is not None:
        entry.translation = run.widen(entry.translation, call)


def _beat_arrivals(call: InjectedCall) -> dict[int, float]:
    """When each numbered line of a streamed plan had been sent (its subject is the plan's text, one mark a line)."""
    arrivals: dict[int, float] = {}
    for line, moment in zip(call.subject.split("\n"), call.marks, strict=False):
        read = read_line(line)
        if read.kind == "beat" and read.number is not None and read.number not in arrivals:
            arrivals[read.number] = moment
    return arrivals


def _picture_page(prompt: str, title: str, beats: dict[int, str]) -> int | None:
    if title and prompt.startswith(title):
        return COVER
    best, best_length = None, MATCHING_PREFIX - 1
    for number, beat in beats.items():
        length = _common_prefix(prompt.lower(), beat.lower())
        if length > best_length:
            best, best_length = number, length
    return best


def _common_prefix(first: str, second: str) -> int:
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return length

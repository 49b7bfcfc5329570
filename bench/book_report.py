"""The book benchmark's report: the goals, what the first page and the book waited for, and the tables.

The goals (from the product's issue): a book at least 3× sooner than the original demo's sequential order in the
same run, and the first finished page at no more than 40 % of Fabula's own book time. The findings read the
timeline of Fabula's run (bench/book_timeline.py); they describe what was measured, not a model of the pipeline.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from bench.book_timeline import PageTimeline, Span, Timeline
from bench.common import RunResult, markdown_table, text_table
from bench.latency_services import LatencyProfile
from webapp.jobs.pipeline import COVER

SPEEDUP_TARGET = 3.0
FIRST_PAGE_SHARE_TARGET = 0.40
STAGES = ("caption", "story", "title", "scenes", "translate", "plan", "write", "illustrate", "book")


class Target(BaseModel):
    name: str
    goal: str
    value: float
    met: bool


class BookReport(BaseModel):
    mode: str
    machine: str
    pages: int
    language: str
    images: int
    image_size: int
    image_steps: int | None
    max_concurrent_images: int
    profile: LatencyProfile | None
    sequential: RunResult
    fabula: RunResult
    image_calls: int
    image_requests: int
    llm_calls: dict[str, int] = {}  # Fabula's run, by call name (stand-ins only)
    sequential_llm_calls: dict[str, int] = {}
    llm_peak_in_flight: int | None = None
    timeline: Timeline | None = None
    speedup: float | None = None
    first_page_share: float | None = None  # Fabula's first finished page / Fabula's book time
    sequential_first_page_share: float | None = None
    targets: list[Target] = []
    findings: list[str] = []

    @property
    def mean_batch(self) -> float:
        return self.image_requests / self.image_calls if self.image_calls else 0.0


def assess(report: BookReport) -> BookReport:
    """Fill in the speed-up, the first-page shares, the targets and the findings."""
    fabula, sequential = report.fabula, report.sequential
    report.speedup = sequential.total_seconds / fabula.total_seconds
    if fabula.first_page_seconds:
        report.first_page_share = fabula.first_page_seconds / fabula.total_seconds
    if sequential.first_page_seconds:
        report.sequential_first_page_share = sequential.first_page_seconds / sequential.total_seconds
    report.targets = [Target(name="speed-up over the sequential order", goal=f"≥ {SPEEDUP_TARGET:.0f}×", value=report.speedup,
                             met=report.speedup >= SPEEDUP_TARGET)]
    if report.first_page_share is not None:
        report.targets.append(Target(name="first finished page / Fabula's book time", goal=f"≤ {FIRST_PAGE_SHARE_TARGET:.0%}",
                                     value=report.first_page_share, met=report.first_page_share <= FIRST_PAGE_SHARE_TARGET))
    report.findings = _findings(report)
    return report


# ---- findings ----------------------------------------------------------------------------------------------
def _findings(report: BookReport) -> list[str]:
    findings: list[str] = []
    timeline = report.timeline
    first = _first_finished(timeline) if timeline else None
    if timeline and first:
        findings.append(_first_page_finding(report, timeline, first))
        floor = _first_page_floor(report, timeline, first)
        if floor and report.first_page_share is not None and report.first_page_share > FIRST_PAGE_SHARE_TARGET:
            findings.append(floor)
    if timeline and timeline.image_calls:
        findings.append(_pictures_finding(report, timeline))
    if timeline:
        ending = _ending_finding(report, timeline)
        if ending:
            findings.append(ending)
    sequential = report.sequential.stages
    if sequential.get("illustrate"):
        findings.append(
            f"The sequential order paints its {report.images} pictures one request at a time after all its text "
            f"({sequential['illustrate']:.2f} s of {report.sequential.total_seconds:.2f} s); its first page is finished with "
            f"its first picture, at {_share(report.sequential_first_page_share)} of its book time."
        )
    if report.speedup is not None and report.speedup < SPEEDUP_TARGET:
        budget = report.sequential.total_seconds / SPEEDUP_TARGET
        text = f"{SPEEDUP_TARGET:.0f}× needs Fabula's book in {budget:.2f} s, {report.fabula.total_seconds - budget:.2f} s sooner than measured"
        if report.profile:
            pictures = report.profile.caption_seconds + report.profile.image_seconds(report.images)
            if pictures >= budget:
                text += (f"; the caption and the {report.images} pictures alone take {pictures:.2f} s on one device that paints "
                         f"{report.profile.image_batch_size} at a time, so only more picture throughput can reach it")
        findings.append(text + ".")
    return findings


def _first_finished(timeline: Timeline) -> PageTimeline | None:
    finished = [page for page in timeline.pages if page.page != COVER and page.finished is not None]
    return min(finished, key=lambda page: page.finished or 0.0, default=None)


def _first_page_finding(report: BookReport, timeline: Timeline, page: PageTimeline) -> str:
    total = report.fabula.total_seconds
    done = page.finished or 0.0
    parts = [f"Page {page.page} was the first finished, at {done:.2f} s ({done / total:.0%} of the book's {total:.2f} s; "
             f"{FIRST_PAGE_SHARE_TARGET:.0%} is {FIRST_PAGE_SHARE_TARGET * total:.2f} s)."]
    if page.beat is not None:
        into = f", {page.beat - timeline.outline.start:.2f} s into the outline" if timeline.outline else ""
        parts.append(f"Its beat arrived at {page.beat:.2f} s{into}.")
    if page.picture:
        parts.append(f"Its picture was painted {_span(page.picture)} s.")
    following = timeline.page(page.page + 1)
    if page.text:
        waited = (f", once the next beat had arrived ({following.beat:.2f} s): a page's text waits for the beat after it"
                  if following and following.beat is not None and 0 <= page.text.start - following.beat < 0.1 else "")
        parts.append(f"Its text was written {_span(page.text)} s{waited}.")
    if page.translation:
        parts.append(f"Its translation {_span(page.translation)} s.")
    picture_end = page.picture.end if page.picture else page.picture_saved
    words = page.translation or page.text
    words_end = words.end if words else page.text_saved
    if picture_end is not None and words_end is not None:
        last = "picture" if picture_end > words_end else "translation" if page.translation else "text" if page.text else "text in the book's language"
        parts.append(f"It waited last for its {last}.")
    return " ".join(parts)


def _first_page_floor(report: BookReport, timeline: Timeline, page: PageTimeline) -> str | None:
    """What the first page's two branches would still take with its text started at its own beat (measured durations)."""
    if page.beat is None or page.picture is None or page.text is None or timeline.caption is None:
        return None
    mark = FIRST_PAGE_SHARE_TARGET * report.fabula.total_seconds
    words = (page.text.end - page.text.start) + (page.translation.end - page.translation.start if page.translation else 0.0)
    picture = page.picture.end - page.picture.start
    caption = timeline.caption.end
    text = (
        f"Even with its text started at its own beat, page {page.page}'s text" + (" and translation" if page.translation else "")
        + f" ({words:.2f} s) would end at {page.beat + words:.2f} s, and its picture cannot end before the caption ({caption:.2f} s) + "
        f"the outline up to its beat ({page.beat - caption:.2f} s) + one image call ({picture:.2f} s) = {page.picture.end:.2f} s; "
        f"the {FIRST_PAGE_SHARE_TARGET:.0%} mark is {mark:.2f} s. "
    )
    if caption + picture > mark:
        return text + (f"One image call right after the caption would already end at {caption + picture:.2f} s: with these service "
                       "times no order of the same calls reaches the mark.")
    return text + (f"Reaching it needs the picture started by {mark - picture:.2f} s ({mark - picture - caption:.2f} s after the "
                   f"caption) and the words done within {mark - caption:.2f} s of the caption.")


def _pictures_finding(report: BookReport, timeline: Timeline) -> str:
    batch = report.profile.image_batch_size if report.profile else None
    calls = ", ".join(_span(call) for call in timeline.image_calls)
    text = (f"The image service made {report.image_calls} model calls for {report.image_requests} requests (mean batch "
            f"{report.mean_batch:.2f}) at {calls} s")
    if batch and report.image_calls > math.ceil(report.images / batch):
        ideal = math.ceil(report.images / batch)
        text += (f"; {ideal} would hold the book's {report.images} pictures in batches of {batch}, but a picture is painted only "
                 "once its beat has arrived: the first call holds page 1 alone (the photo's scene, sent the moment the caption is "
                 "back), later calls the pictures known when the device became free")
    pictures = [page.picture for page in timeline.pages if page.picture]
    if timeline.outline and pictures:
        last = max(pictures, key=lambda span: span.end)
        text += (f". The outline ended at {timeline.outline.end:.2f} s; the last picture was painted {_span(last)} s, "
                 f"{last.start - timeline.outline.end:+.2f} s from the outline's end")
    return text + "."


def _ending_finding(report: BookReport, timeline: Timeline) -> str | None:
    ends: dict[str, float] = {}
    pictures = [(page.page, page.picture.end) for page in timeline.pages if page.picture]
    if pictures:
        number, end = max(pictures, key=lambda picture: picture[1])
        ends["the last picture (" + ("the cover" if number == COVER else f"page {number}") + ")"] = end
    translations = [(page.page, page.translation.end) for page in timeline.pages if page.translation]
    if translations:
        number, end = max(translations, key=lambda translation: translation[1])
        ends[f"the last translation (page {number})"] = end
    if not ends:
        return None
    what, moment = max(ends.items(), key=lambda item: item[1])
    book = report.fabula.stages.get("book", 0.0)
    others = "; ".join(f"{name} at {end:.2f} s" for name, end in ends.items() if name != what)
    return (f"The book waited for {what}, done at {moment:.2f} s" + (f" ({others})" if others else "")
            + f"; binding took {book:.2f} s, the book was ready at {report.fabula.total_seconds:.2f} s.")


# ---- rendering ---------------------------------------------------------------------------------------------
def _stage_rows(report: BookReport) -> tuple[list[str], list[list[object]]]:
    headers = ["stage", "sequential s", "Fabula s"]
    rows: list[list[object]] = []
    for stage in STAGES:
        if stage in report.sequential.stages or stage in report.fabula.stages:
            rows.append([stage, report.sequential.stages.get(stage), report.fabula.stages.get(stage)])
    rows.append(["total (wall)", report.sequential.total_seconds, report.fabula.total_seconds])
    rows.append(["first page finished", report.sequential.first_page_seconds, report.fabula.first_page_seconds])
    rows.append(["first page / total", _share(report.sequential_first_page_share), _share(report.first_page_share)])
    return headers, rows


def _timeline_rows(timeline: Timeline) -> tuple[list[str], list[list[object]]]:
    headers = ["page", "beat arrived", "picture", "text", "translation", "finished"]
    rows: list[list[object]] = []
    if timeline.caption:
        rows.append(["caption", None, None, _span(timeline.caption), None, None])
    if timeline.outline:
        rows.append(["outline", None, None, _span(timeline.outline), None, None])
    if timeline.title_translation:
        rows.append(["title", None, None, None, _span(timeline.title_translation), None])
    for page in timeline.pages:
        picture = _span(page.picture) if page.picture else (f"saved {page.picture_saved:.2f}" if page.picture_saved is not None else None)
        text = _span(page.text) if page.text else (f"saved {page.text_saved:.2f}" if page.text_saved is not None and not page.translation else None)
        rows.append(["cover" if page.page == COVER else page.page, page.beat, picture, text,
                     _span(page.translation) if page.translation else None, page.finished])
    return headers, rows


def _summary(report: BookReport) -> list[str]:
    lines = [
        f"{report.pages} pages, language {report.language}, {report.images} pictures at {report.image_size} px"
        + (f", {report.image_steps} steps" if report.image_steps else ""),
        f"machine: {report.machine}",
    ]
    profile = report.profile
    if profile:
        lines.append(
            f"injected: caption {profile.caption_seconds:g} s/call; LLM {profile.llm_seconds_per_token * 1000:g} ms/token "
            f"(+{profile.llm_prefill_seconds:g} s/call), pages of {profile.string_chars} characters, beats of {profile.beat_chars}; "
            f"images {profile.image_seconds_per_call:g} s per call of up to {profile.image_batch_size} "
            f"(+{profile.image_seconds_per_extra_image:g} s per extra image), batching window {profile.batch_window_ms:g} ms"
        )
    if report.llm_calls:
        peak = f" (at most {report.llm_peak_in_flight} decoded at once)" if report.llm_peak_in_flight is not None else ""
        lines.append("LLM calls: Fabula " + _calls(report.llm_calls) + peak + "; sequential " + _calls(report.sequential_llm_calls))
    lines.append(f"image service (Fabula run): {report.image_calls} model calls for {report.image_requests} requests "
                 f"(mean batch {report.mean_batch:.2f})")
    if report.fabula.first_page_seconds and report.sequential.first_page_seconds:
        lines.append(f"first finished page: Fabula {report.fabula.first_page_seconds:.2f} s ({_share(report.first_page_share)} of its book), "
                     f"sequential {report.sequential.first_page_seconds:.2f} s ({_share(report.sequential_first_page_share)} of its book)")
    lines.append(f"book: Fabula {report.fabula.total_seconds:.2f} s, sequential {report.sequential.total_seconds:.2f} s")
    for target in report.targets:
        value = f"{target.value:.2f}×" if "speed-up" in target.name else _share(target.value)
        lines.append(f"{target.name}: {value} (target {target.goal}: {'met' if target.met else 'MISSED'})")
    return lines


STAGE_NOTE = ("Fabula's plan, write and illustrate are seconds from the start of its story stage (after the caption) until "
              "the outline, every page's text and translation, and every picture were done; they overlap. Its caption and "
              "book are their own durations. The sequential stages run one after another.")


def render_text(report: BookReport) -> str:
    headers, rows = _stage_rows(report)
    parts = [f"Book benchmark ({report.mode})", *_summary(report), "", text_table(headers, rows), STAGE_NOTE]
    if report.timeline:
        parts += ["", "Fabula's timeline (seconds from submission; spans are start–end):", text_table(*_timeline_rows(report.timeline))]
    if report.findings:
        parts += ["", "Findings:", *(f"- {finding}" for finding in report.findings)]
    return "\n".join(parts)


def render_markdown(report: BookReport) -> str:
    headers, rows = _stage_rows(report)
    parts = [f"**Book benchmark ({report.mode})**", "", *(f"- {line}" for line in _summary(report)), "", markdown_table(headers, rows),
             "", STAGE_NOTE]
    if report.timeline:
        parts += ["", "Fabula's timeline (seconds from submission; spans are start–end):", "", markdown_table(*_timeline_rows(report.timeline))]
    if report.findings:
        parts += ["", "Findings:", "", *(f"- {finding}" for finding in report.findings)]
    return "\n".join(parts)


def _span(span: Span) -> str:
    return f"{span.start:.2f}–{span.end:.2f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(calls.items())) or "none logged"

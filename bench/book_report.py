"""The book benchmark's report: targets, what explains a miss, and the tables (plain text and Markdown).

Projections (bench/book_projections.py) re-use the stand-in's own reply model (`schema_instance` at the profile's
string length), so "what if the pipeline did X" is computed with the same token counts the measured run paid for.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from bench.book_projections import CriticalPath, Projection, projections
from bench.common import RunResult, markdown_table, text_table
from bench.latency_services import LatencyProfile

RATIO_TARGET = 1.05
SPEEDUP_TARGET = 3.0
STAGES = ("caption", "story", "title", "scenes", "plan", "write", "translate", "illustrate", "book")
# Which part of the critical path each of Fabula's stages is: "plan" makes the outline, "write" every page's text
# and its translation.
INJECTED_BY_STAGE = {"caption": "caption", "plan": "outline", "write": "write", "illustrate": "illustrate", "book": "book"}


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
    critical_path: CriticalPath | None = None
    sequential_injected_seconds: float | None = None
    llm_calls: dict[str, int] = {}
    llm_peak_in_flight: int | None = None
    speedup: float | None = None
    first_page_speedup: float | None = None
    ratio_to_critical_path: float | None = None
    targets: list[Target] = []
    findings: list[str] = []
    projections: list[Projection] = []


def assess(report: BookReport) -> BookReport:
    """Fill in the speed-ups, the targets, the findings and (with the stand-ins) the projections."""
    fabula, sequential = report.fabula, report.sequential
    report.speedup = sequential.total_seconds / fabula.total_seconds
    if fabula.first_page_seconds and sequential.first_page_seconds:
        report.first_page_speedup = sequential.first_page_seconds / fabula.first_page_seconds
    report.targets = [Target(name="speed-up over the sequential order", goal=f"≥ {SPEEDUP_TARGET:.0f}×", value=report.speedup,
                             met=report.speedup >= SPEEDUP_TARGET)]
    critical = report.critical_path
    if critical is None or report.profile is None:
        return report
    report.ratio_to_critical_path = fabula.total_seconds / critical.total
    report.targets.insert(0, Target(name="book time / critical path", goal=f"≤ {RATIO_TARGET:.2f}",
                                    value=report.ratio_to_critical_path, met=report.ratio_to_critical_path <= RATIO_TARGET))
    report.findings = _findings(report, critical, report.profile)
    report.projections = projections(critical, report.profile, pages=report.pages, images=report.images,
                                     sequential_seconds=sequential.total_seconds)
    return report


def _findings(report: BookReport, critical: CriticalPath, profile: LatencyProfile) -> list[str]:
    stages = report.fabula.stages
    findings: list[str] = []
    parallel_measured = max(stages.get("write", 0.0), stages.get("illustrate", 0.0))
    tracked = stages.get("caption", 0.0) + stages.get("plan", 0.0) + parallel_measured + stages.get("book", 0.0)
    overheads = {
        "caption": stages.get("caption", 0.0) - critical.caption,
        "outline": stages.get("plan", 0.0) - critical.outline,
        "write ‖ illustrate": parallel_measured - max(critical.write, critical.illustrate),
        "outside the stages (submit, store, events)": report.fabula.total_seconds - tracked,
    }
    overhead = report.fabula.total_seconds - critical.total
    findings.append(
        f"Overhead over the critical path: {overhead:.2f} s ({overhead / critical.total:.1%}); by part: "
        + ", ".join(f"{name} {seconds:+.2f} s" for name, seconds in overheads.items()) + "."
    )
    if report.llm_peak_in_flight is not None:
        calls = ", ".join(f"{count} {name}" for name, count in sorted(report.llm_calls.items()))
        findings.append(f"LLM calls in Fabula's run: {calls}; at most {report.llm_peak_in_flight} decoded at once by the stand-in.")
    ideal_calls = math.ceil(report.images / profile.image_batch_size)
    if report.image_calls > ideal_calls:
        findings.append(
            f"The image service made {report.image_calls} calls for {report.images} pictures where {ideal_calls} suffice: "
            f"requests arrived outside the {profile.batch_window_ms:.0f} ms batching window or were held back by "
            f"PipelineConfig.max_concurrent_images = {report.max_concurrent_images} (webapp/jobs/pipeline.py)."
        )
    if critical.write > critical.illustrate:
        findings.append(
            f"Writing is the longer branch of the parallel stage (page text {critical.page_text:.2f} s + translation "
            f"{critical.translation:.2f} s); the {report.images} pictures ({critical.illustrate:.2f} s) are hidden behind it."
        )
    else:
        findings.append(
            f"The pictures are the longer branch of the parallel stage ({critical.illustrate:.2f} s for {report.images} in "
            f"{ideal_calls} call(s) of up to {profile.image_batch_size}); every page's text and translation "
            f"({critical.write:.2f} s) is hidden behind them."
        )
    findings.append(
        f"The outline ({critical.outline_tokens} tokens, {critical.outline:.2f} s) is {critical.outline / critical.total:.0%} "
        f"of the critical path and the one LLM call on it that nothing overlaps; caption {critical.caption:.2f} s, "
        f"parallel stage {max(critical.write, critical.illustrate):.2f} s, book {critical.book:.2f} s."
    )
    bound = report.sequential.total_seconds / critical.total
    if bound < SPEEDUP_TARGET:
        budget = report.sequential.total_seconds / SPEEDUP_TARGET
        floor = critical.caption + critical.illustrate + critical.book
        reason = (
            f"the pictures alone, with the caption and the book, take {floor:.2f} s, so only more picture throughput "
            f"(a device that batches, or more devices) can reach it" if floor >= budget
            else "better overlap cannot give it; a shorter outline or fewer picture calls can (see the projections)"
        )
        findings.append(
            f"Even at its critical path this order is only {bound:.2f}× faster than the sequential one: "
            f"{SPEEDUP_TARGET:.0f}× needs a book in {budget:.2f} s, {critical.total - budget:.2f} s less; {reason}."
        )
    return findings


# ---- rendering -----------------------------------------------------------------------------------------
def _stage_rows(report: BookReport) -> tuple[list[str], list[list[object]]]:
    critical = report.critical_path
    injected = critical.model_dump() if critical else {}
    headers = ["stage", "sequential s", "Fabula s"] + (["injected (Fabula) s"] if critical else [])
    rows: list[list[object]] = []
    for stage in STAGES:
        if stage not in report.sequential.stages and stage not in report.fabula.stages:
            continue
        row: list[object] = [stage, report.sequential.stages.get(stage), report.fabula.stages.get(stage)]
        if critical:
            row.append(injected.get(INJECTED_BY_STAGE[stage]) if stage in INJECTED_BY_STAGE else None)
        rows.append(row)
    rows.append(["total (wall)", report.sequential.total_seconds, report.fabula.total_seconds] + ([critical.total] if critical else []))
    rows.append(["first page finished", report.sequential.first_page_seconds, report.fabula.first_page_seconds] + ([None] if critical else []))
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
            f"(+{profile.llm_prefill_seconds:g} s/call), {profile.string_chars} characters per generated string; images "
            f"{profile.image_seconds_per_call:g} s per call of up to {profile.image_batch_size} "
            f"(+{profile.image_seconds_per_extra_image:g} s per extra image), batching window {profile.batch_window_ms:g} ms"
        )
    critical = report.critical_path
    if critical:
        lines.append(
            f"critical path: caption {critical.caption:.2f} + outline {critical.outline:.2f} + max(page text "
            f"{critical.page_text:.2f} + translation {critical.translation:.2f}, illustrate {critical.illustrate:.2f}) + book "
            f"{critical.book:.2f} = {critical.total:.2f} s"
        )
        lines.append(f"sequential order's own floor (injected + book): {report.sequential_injected_seconds:.2f} s")
    mean_batch = report.image_requests / report.image_calls if report.image_calls else 0.0
    lines.append(f"image service (Fabula run): {report.image_calls} model calls for {report.image_requests} requests (mean batch {mean_batch:.2f})")
    if report.first_page_speedup:
        relation = (f"{report.first_page_speedup:.2f}× sooner" if report.first_page_speedup >= 1
                    else f"{1 / report.first_page_speedup:.2f}× later")
        lines.append(f"first finished page: Fabula {report.fabula.first_page_seconds:.2f} s, sequential "
                     f"{report.sequential.first_page_seconds:.2f} s ({relation})")
    for target in report.targets:
        lines.append(f"{target.name}: {target.value:.3f} (target {target.goal}: {'met' if target.met else 'MISSED'})")
    return lines


def render_text(report: BookReport) -> str:
    headers, rows = _stage_rows(report)
    parts = [f"Book benchmark ({report.mode})", *_summary(report), "", text_table(headers, rows)]
    if report.findings:
        parts += ["", "Findings:", *(f"- {finding}" for finding in report.findings)]
    if report.projections:
        parts += ["", "Projections (critical path if the pipeline changed):"]
        parts += [f"- {p.change}: {p.critical_path_seconds:.2f} s, {p.speedup:.2f}× over sequential [{p.where}]" for p in report.projections]
    return "\n".join(parts)


def render_markdown(report: BookReport) -> str:
    headers, rows = _stage_rows(report)
    parts = [f"**Book benchmark ({report.mode})**", "", *(f"- {line}" for line in _summary(report)), "", markdown_table(headers, rows)]
    if report.findings:
        parts += ["", "Findings:", "", *(f"- {finding}" for finding in report.findings)]
    if report.projections:
        parts += ["", markdown_table(
            ["change", "where", "critical path s", "speed-up over sequential"],
            [[p.change, p.where, p.critical_path_seconds, f"{p.speedup:.2f}×"] for p in report.projections],
        )]
    return "\n".join(parts)

"""The book benchmark's report: targets, what explains a miss, and the tables (plain text and Markdown).

Projections re-use the stand-in's own reply model (`schema_instance` at the profile's string length), so
"what if the pipeline did X" is computed with the same token counts the measured run paid for.
"""

from __future__ import annotations

import json
import math

from pydantic import BaseModel

from bench.common import RunResult, markdown_table, text_table
from bench.latency_services import LatencyProfile
from bench.schema_instance import schema_instance
from webapp.story.plan import LengthBudget, plan_model, translation_model

RATIO_TARGET = 1.05
SPEEDUP_TARGET = 3.0
SEQUENTIAL_STAGES = ("caption", "story", "title", "scenes", "plan", "translate", "illustrate", "book")


class CriticalPath(BaseModel):
    caption: float
    plan: float
    translate: float
    illustrate: float
    book: float
    total: float


class Target(BaseModel):
    name: str
    goal: str
    value: float
    met: bool


class Projection(BaseModel):
    change: str
    where: str
    critical_path_seconds: float
    speedup: float


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
    report.projections = _projections(report, critical, report.profile)
    return report


def _findings(report: BookReport, critical: CriticalPath, profile: LatencyProfile) -> list[str]:
    stages = report.fabula.stages
    findings: list[str] = []
    parallel_measured = max(stages.get("translate", 0.0), stages.get("illustrate", 0.0))
    tracked = stages.get("caption", 0.0) + stages.get("plan", 0.0) + parallel_measured + stages.get("book", 0.0)
    overheads = {
        "caption": stages.get("caption", 0.0) - critical.caption,
        "plan": stages.get("plan", 0.0) - critical.plan,
        "translate ‖ illustrate": parallel_measured - max(critical.translate, critical.illustrate),
        "outside the stages (submit, store, events)": report.fabula.total_seconds - tracked,
    }
    overhead = report.fabula.total_seconds - critical.total
    findings.append(
        f"Overhead over the critical path: {overhead:.2f} s ({overhead / critical.total:.1%}); by part: "
        + ", ".join(f"{name} {seconds:+.2f} s" for name, seconds in overheads.items()) + "."
    )
    ideal_calls = math.ceil(report.images / profile.image_batch_size)
    if report.image_calls > ideal_calls:
        findings.append(
            f"The image service made {report.image_calls} calls for {report.images} pictures where {ideal_calls} suffice: "
            f"requests arrived outside the {profile.batch_window_ms:.0f} ms batching window or were held back by "
            f"PipelineConfig.max_concurrent_images = {report.max_concurrent_images} (webapp/jobs/pipeline.py)."
        )
    if critical.translate > critical.illustrate:
        findings.append(
            f"Translation ({critical.translate:.2f} s, one call) is the longer branch of the parallel stage; the "
            f"{report.images} pictures ({critical.illustrate:.2f} s) are hidden behind it."
        )
    llm = critical.plan + critical.translate
    findings.append(
        f"The LLM holds {llm / critical.total:.0%} of the critical path (plan {critical.plan:.2f} s + translation "
        f"{critical.translate:.2f} s); pictures {critical.illustrate:.2f} s, caption {critical.caption:.2f} s, book {critical.book:.2f} s."
    )
    bound = report.sequential.total_seconds / critical.total
    if bound < SPEEDUP_TARGET:
        findings.append(
            f"Even at its critical path this order is only {bound:.2f}× faster than the sequential one: the "
            f"{SPEEDUP_TARGET:.0f}× target needs fewer sequential LLM tokens, not better overlap (see the projections)."
        )
    return findings


def _reply_seconds(schema: dict, profile: LatencyProfile) -> float:
    reply = json.dumps(schema_instance(schema, string_chars=profile.string_chars), ensure_ascii=False)
    return profile.llm_seconds(profile.tokens(reply))


def _projections(report: BookReport, critical: CriticalPath, profile: LatencyProfile) -> list[Projection]:
    """Critical paths of two pipeline changes, from the stand-in's reply sizes (gpu-profile length budgets)."""
    budget, pages = LengthBudget(), report.pages
    per_page_translation = _reply_seconds(translation_model(1, budget).model_json_schema(), profile)
    translate_by_page = critical.caption + critical.plan + max(per_page_translation, critical.illustrate) + critical.book
    plan_instance = schema_instance(plan_model(pages, budget).model_json_schema(), string_chars=profile.string_chars)
    page_texts = [page.pop("text") for page in plan_instance["pages"]]
    outline = profile.llm_seconds(profile.tokens(json.dumps(plan_instance, ensure_ascii=False)))
    page_text = profile.llm_seconds(profile.tokens(json.dumps({"text": page_texts[0]}, ensure_ascii=False)))
    outline_first = critical.caption + outline + max(page_text + per_page_translation, critical.illustrate) + critical.book
    sequential = report.sequential.total_seconds
    return [
        Projection(
            change="translate each page in its own concurrent call (the LLM server batches them)",
            where="webapp/story/writer.py (translate: one call per page via translate_texts, gathered) and "
                  "webapp/jobs/pipeline.py (translate)",
            critical_path_seconds=translate_by_page, speedup=sequential / translate_by_page,
        ),
        Projection(
            change="plan an outline first (title, characters, cover and scene prompts), then write and translate "
                   "each page's text in concurrent calls while the pictures are painted",
            where="webapp/story/plan.py (an outline model), webapp/story/writer.py, webapp/jobs/pipeline.py (_run)",
            critical_path_seconds=outline_first, speedup=sequential / outline_first,
        ),
    ]


# ---- rendering -----------------------------------------------------------------------------------------
def _stage_rows(report: BookReport) -> tuple[list[str], list[list[object]]]:
    critical = report.critical_path
    injected = critical.model_dump() if critical else {}
    headers = ["stage", "sequential s", "Fabula s"] + (["injected (Fabula) s"] if critical else [])
    rows: list[list[object]] = []
    for stage in SEQUENTIAL_STAGES:
        if stage not in report.sequential.stages and stage not in report.fabula.stages:
            continue
        row: list[object] = [stage, report.sequential.stages.get(stage), report.fabula.stages.get(stage)]
        if critical:
            row.append(injected.get(stage))
        rows.append(row)
    rows.append(["total (wall)", report.sequential.total_seconds, report.fabula.total_seconds] + ([critical.total] if critical else []))
    rows.append(["first page done", report.sequential.first_page_seconds, report.fabula.first_page_seconds] + ([None] if critical else []))
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
            f"critical path: caption {critical.caption:.2f} + plan {critical.plan:.2f} + max(translate {critical.translate:.2f}, "
            f"illustrate {critical.illustrate:.2f}) + book {critical.book:.2f} = {critical.total:.2f} s"
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

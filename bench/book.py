"""End-to-end book time: the original demo's sequential order against Fabula's pipeline, in one run.

    python bench/book.py --profile tiny            # the real tiny services, started in this process (CPU)
    python bench/book.py --latency                 # the latency-injected stand-ins (bench/latency_services.py)
    python bench/book.py --latency --markdown      # tables to paste into docs/benchmarks.md

The report gives both orders' stages, book time and first finished page, the goals (≥ 3× over the sequential
order; the first page at ≤ 40 % of Fabula's book time), and, with the stand-ins, the timeline of Fabula's run
(when each beat arrived, when each picture, text and translation ran) and what the first page and the book
waited for (bench/book_report.py, bench/book_timeline.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.book_report import BookReport, assess, render_markdown, render_text  # noqa: E402
from bench.book_timeline import build_timeline  # noqa: E402
from bench.common import RunResult, batch_counters, machine_description, quiet_libraries  # noqa: E402
from bench.gpu_common import limit_cpu_threads  # noqa: E402
from bench.latency_services import LatencyProfile, LatencyServices, peak_in_flight  # noqa: E402
from bench.sequential import run_sequential, warm_up_book  # noqa: E402
from shared.errors import FabulaError  # noqa: E402
from shared.settings import Profile, Settings  # noqa: E402
from webapp.jobs.models import JobStatus  # noqa: E402
from webapp.jobs.progress import COVER, Artifacts  # noqa: E402
from webapp.story.options import StoryOptions  # noqa: E402
from webapp.workshop import Workshop, build_workshop  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = REPOSITORY / "webapp" / "samples" / "cat.jpg"
PUBLIC_URL = "http://127.0.0.1:7860"


@dataclass
class FabulaRun:
    """One book through the pipeline: its result, its job's saved steps, and when (seconds from submission) the
    benchmark first saw each page's picture and its text in the book's language saved."""

    result: RunResult
    started: float
    steps: dict
    saved: dict[int, dict[str, float]] = field(default_factory=dict)


async def run_fabula(workshop: Workshop, photo: bytes, options: StoryOptions) -> FabulaRun:
    """One book through the runner and the pipeline; seconds per stage come from `pipeline.stage_seconds`.

    A page is finished when its picture is saved and its text (translated, for a book not in English) is saved;
    the pipeline writes and paints pages independently, so both are checked at every event it publishes."""
    started = time.perf_counter()
    record = workshop.stories.submit(photo, options)
    events = workshop.events.subscribe(record.id)
    text_step = "text" if options.language == "en" else "translation"
    saved: dict[int, dict[str, float]] = {page: {} for page in [*range(1, options.pages + 1), COVER]}

    def look() -> None:
        now = time.perf_counter() - started
        steps = workshop.store.steps(record.id)
        for page, seen in saved.items():
            if "picture" not in seen and workshop.artifacts.exists(record.id, Artifacts.picture(page)):
                seen["picture"] = now
            if page != COVER and "text" not in seen and f"{text_step}:{page}" in steps:
                seen["text"] = now

    async def watch() -> None:
        while True:
            event = await events.get()
            look()
            if event.status in (JobStatus.done, JobStatus.failed):
                return

    watcher = asyncio.create_task(watch())
    finished = await workshop.stories.wait(record.id)
    total = time.perf_counter() - started
    watcher.cancel()
    workshop.events.unsubscribe(record.id, events)
    if finished.status != JobStatus.done:
        raise FabulaError(f"Fabula's pipeline failed the benchmark book: {finished.error}")
    look()
    stages = workshop.store.progress(record.id).stage_seconds
    finished_pages = [max(seen.values()) for page, seen in saved.items() if page != COVER and len(seen) == 2]
    result = RunResult(name="Fabula pipeline", total_seconds=total, stages=stages,
                       first_page_seconds=min(finished_pages, default=None), pages=options.pages)
    return FabulaRun(result, started, workshop.store.steps(record.id), saved)


async def warm_up(workshop: Workshop, photo: bytes) -> None:
    """One caption, one picture at the book's size and one short LLM call, so first-call costs are not timed."""
    from shared.schemas import ImageGenerationRequest

    config = workshop.pipeline.painter.config
    await workshop.pipeline.captioner.caption(photo, max_new_tokens=8)
    await workshop.pipeline.painter.illustrator.generate(ImageGenerationRequest(
        prompt="warm-up", size=f"{config.image_size}x{config.image_size}", num_inference_steps=config.image_steps, seed=0))
    await workshop.pipeline.writer.translate("Warm-up", "fr", [])


async def benchmark(settings: Settings, photo: bytes, options: StoryOptions, *, mode: str,
                    stand_ins: LatencyServices | None = None) -> BookReport:
    """Both orders against the services `settings` points at; `stand_ins` when they are the latency stand-ins.

    The orders compared are caption → words → pictures → PDF, so the book is not read aloud (narration runs beside
    the pictures; the narrate service's own metrics time it)."""
    options = options.model_copy(update={"narrate": False})
    workshop = build_workshop(settings, public_url=PUBLIC_URL)
    try:
        if stand_ins is None:
            await warm_up(workshop, photo)
        await warm_up_book(workshop, options)
        sequential_started = time.perf_counter()
        sequential = await run_sequential(workshop, photo, options)
        sequential_calls = stand_ins.log.since(sequential_started) if stand_ins else []
        async with httpx.AsyncClient() as http:
            before = batch_counters((await http.get(settings.illustrate_url + "/metrics")).text, "illustrate")
            fabula = await run_fabula(workshop, photo, options)
            after = batch_counters((await http.get(settings.illustrate_url + "/metrics")).text, "illustrate")
        config = workshop.pipeline.painter.config
    finally:
        await workshop.aclose()
    fabula_calls = stand_ins.log.since(fabula.started) if stand_ins else []
    report = BookReport(
        mode=mode, machine=machine_description(), pages=options.pages, language=options.language, images=options.pages + 1,
        image_size=config.image_size, image_steps=config.image_steps, max_concurrent_images=config.max_concurrent_images,
        profile=stand_ins.profile if stand_ins else None, sequential=sequential, fabula=fabula.result,
        image_calls=int(after[0] - before[0]), image_requests=int(after[1] - before[1]),
        llm_calls=dict(Counter(call.name for call in fabula_calls if call.service == "llm")),
        sequential_llm_calls=dict(Counter(call.name for call in sequential_calls if call.service == "llm")),
        llm_peak_in_flight=peak_in_flight(fabula_calls, "llm") if stand_ins else None,
        timeline=build_timeline(fabula_calls, fabula.started, fabula.steps, fabula.saved, options.pages),
    )
    return assess(report)


def run_latency(profile: LatencyProfile, options: StoryOptions, photo: bytes) -> BookReport:
    with tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        # The gpu profile's length budgets and picture size, as in a real deployment; the stand-in's batch size.
        base = Settings(profile=Profile.gpu, data_dir=Path(folder) / "data", cache_dir=Path(folder) / "cache", api_key=None,
                        max_batch_size=profile.image_batch_size)
        stand_ins = LatencyServices(base, profile)
        settings = stand_ins.start()
        try:
            return asyncio.run(benchmark(settings, photo, options, mode="latency", stand_ins=stand_ins))
        finally:
            stand_ins.stop()


def start_tiny_services(settings: Settings) -> tuple[Settings, list]:
    """The three tiny services in this process, started one after another: two transformers models loading at
    once in one process can fail ("Cannot copy out of meta tensor"), so each waits for the previous to be ready."""
    from webapp.launcher import InProcessServices

    started: list[InProcessServices] = []
    try:
        for name in ("caption", "llm", "illustrate"):
            services = InProcessServices(settings, names=(name,))
            settings = services.start()
            started.append(services)
    except BaseException:
        for services in started:
            services.stop()
        raise
    return settings, started


def run_tiny(options: StoryOptions, photo: bytes, cache_dir: Path | None = None) -> BookReport:
    with tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        overrides: dict = {"profile": Profile.tiny, "data_dir": Path(folder) / "data", "api_key": None}
        if cache_dir is not None:
            overrides["cache_dir"] = cache_dir
        settings, started = start_tiny_services(Settings(**overrides))
        try:
            return asyncio.run(benchmark(settings, photo, options, mode="tiny"))
        finally:
            for services in started:
                services.stop()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--profile", choices=["tiny"], help="run the real tiny services in this process")
    which.add_argument("--latency", action="store_true", help="run the latency-injected stand-ins (benchmark only)")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--language", default="fr", help="book language; not English, so the translation step runs")
    parser.add_argument("--style", default="watercolor")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--cache-dir", type=Path, default=None, help="tiny models' cache (default: FABULA_CACHE_DIR)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the in-process tiny services (0: torch's default)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables for docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    defaults = LatencyProfile()
    latency = parser.add_argument_group("latency stand-ins")
    latency.add_argument("--caption-seconds", type=float, default=defaults.caption_seconds)
    latency.add_argument("--llm-ms-per-token", type=float, default=defaults.llm_seconds_per_token * 1000)
    latency.add_argument("--llm-max-concurrent", type=int, default=None, help="default: unlimited (continuous batching)")
    latency.add_argument("--image-seconds", type=float, default=defaults.image_seconds_per_call, help="seconds per image call")
    latency.add_argument("--image-batch", type=int, default=defaults.image_batch_size, help="images one call serves")
    latency.add_argument("--image-extra-seconds", type=float, default=defaults.image_seconds_per_extra_image,
                         help="seconds added per image past the first in a call")
    latency.add_argument("--window-ms", type=float, default=defaults.batch_window_ms)
    latency.add_argument("--string-chars", type=int, default=defaults.string_chars,
                         help="characters per generated string: a JSON field, a page of plain text")
    latency.add_argument("--beat-chars", type=int, default=defaults.beat_chars, help="characters per one-sentence beat of a plain-text plan")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    args = _arguments(argv)
    options = StoryOptions(pages=args.pages, language=args.language, style=args.style, seed=7)
    photo = args.photo.read_bytes()
    if args.latency:
        profile = LatencyProfile(
            caption_seconds=args.caption_seconds, llm_seconds_per_token=args.llm_ms_per_token / 1000,
            llm_max_concurrent=args.llm_max_concurrent, image_seconds_per_call=args.image_seconds,
            image_batch_size=args.image_batch, image_seconds_per_extra_image=args.image_extra_seconds,
            batch_window_ms=args.window_ms, string_chars=args.string_chars, beat_chars=args.beat_chars,
        )
        report = run_latency(profile, options, photo)
    else:
        limit_cpu_threads(args.threads)
        report = run_tiny(options, photo, args.cache_dir)
    print(render_markdown(report) if args.markdown else render_text(report))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

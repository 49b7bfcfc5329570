"""End-to-end book time: the original demo's sequential order against Fabula's pipeline, in one run.

    python bench/book.py --profile tiny            # the real tiny services, started in this process (CPU)
    python bench/book.py --latency                 # the latency-injected stand-ins (bench/latency_services.py)
    python bench/book.py --latency --markdown      # tables to paste into docs/benchmarks.md

With the stand-ins the injected latencies are known, so the report adds Fabula's critical path (caption + outline +
max(longest page text + longest page translation, illustrate) + book, from the injected times and the measured book
stage) and how close the measured book time comes to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.book_report import BookReport, CriticalPath, assess, render_markdown, render_text  # noqa: E402
from bench.common import RunResult, batch_counters, machine_description, quiet_libraries  # noqa: E402
from bench.gpu_common import limit_cpu_threads  # noqa: E402
from bench.latency_services import InjectedCall, LatencyProfile, LatencyServices, peak_in_flight  # noqa: E402
from bench.sequential import run_sequential, warm_up_book  # noqa: E402
from shared.errors import FabulaError  # noqa: E402
from shared.settings import Profile, Settings  # noqa: E402
from webapp.jobs.models import JobStatus  # noqa: E402
from webapp.jobs.pipeline import image_name  # noqa: E402
from webapp.story.options import StoryOptions  # noqa: E402
from webapp.studio import Studio, build_studio  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = REPOSITORY / "webapp" / "samples" / "cat.jpg"
PUBLIC_URL = "http://127.0.0.1:7860"


async def run_fabula(studio: Studio, photo: bytes, options: StoryOptions) -> RunResult:
    """One book through the runner and the pipeline; seconds per stage come from `pipeline.stage_seconds`.

    A page is finished when its picture is saved and its text (translated, for a book not in English) is saved;
    the pipeline writes and paints pages independently, so both are checked at every event it publishes."""
    started = time.perf_counter()
    record = studio.runner.submit(photo, options)
    events = studio.events.subscribe(record.id)
    first_page: list[float] = []
    text_step = "text" if options.language == "en" else "translation"

    def a_page_is_finished() -> bool:
        steps = studio.store.steps(record.id)
        return any(f"{text_step}:{page}" in steps and studio.artifacts.exists(record.id, image_name(page))
                   for page in range(1, options.pages + 1))

    async def watch() -> None:
        while True:
            event = await events.get()
            if not first_page and a_page_is_finished():
                first_page.append(time.perf_counter() - started)
            if event.status in (JobStatus.done, JobStatus.failed):
                return

    watcher = asyncio.create_task(watch())
    finished = await studio.runner.wait(record.id)
    total = time.perf_counter() - started
    watcher.cancel()
    studio.events.unsubscribe(record.id, events)
    if finished.status != JobStatus.done:
        raise FabulaError(f"Fabula's pipeline failed the benchmark book: {finished.error}")
    stages = dict(studio.pipeline.stage_seconds[record.id])
    return RunResult(name="Fabula pipeline", total_seconds=total, stages=stages,
                     first_page_seconds=first_page[0] if first_page else None, pages=options.pages)


async def warm_up(studio: Studio, photo: bytes) -> None:
    """One caption, one picture at the book's size and one short LLM call, so first-call costs are not timed."""
    from shared.schemas import ImageGenerationRequest

    config = studio.pipeline.config
    await studio.captioner.caption(photo, max_new_tokens=8)
    await studio.illustrator.generate(ImageGenerationRequest(
        prompt="warm-up", size=f"{config.image_size}x{config.image_size}", num_inference_steps=config.image_steps, seed=0))
    await studio.writer.translate_texts(["Warm-up"], "fr", [])


def critical_path(calls: list[InjectedCall], profile: LatencyProfile, fabula: RunResult, images: int) -> CriticalPath:
    """Fabula's critical path from the latencies injected during its run and its measured book stage.

    Every page's text → translation chain runs beside the others, so the writing branch is the longest page text
    plus the longest translation (the title's translation runs beside them and is shorter than a page's)."""
    def llm(name: str) -> list[InjectedCall]:
        return [call for call in calls if call.service == "llm" and call.name == name]

    def longest(name: str) -> InjectedCall | None:
        return max(llm(name), key=lambda call: call.injected_seconds, default=None)

    caption = sum(call.injected_seconds for call in calls if call.service == "caption")
    outline, page_text, translation = longest("story_outline"), longest("page_text"), longest("translation")
    write = sum(call.injected_seconds for call in (page_text, translation) if call is not None)
    illustrate = profile.image_seconds(images)
    book = fabula.stages.get("book", 0.0)
    outline_seconds = outline.injected_seconds if outline else 0.0
    return CriticalPath(
        caption=caption, outline=outline_seconds, page_text=page_text.injected_seconds if page_text else 0.0,
        translation=translation.injected_seconds if translation else 0.0, write=write, illustrate=illustrate, book=book,
        total=caption + outline_seconds + max(write, illustrate) + book,
        outline_tokens=outline.tokens if outline else 0, page_text_tokens=page_text.tokens if page_text else 0,
        translation_tokens=translation.tokens if translation else 0,
    )


async def benchmark(settings: Settings, photo: bytes, options: StoryOptions, *, mode: str,
                    stand_ins: LatencyServices | None = None) -> BookReport:
    """Both orders against the services `settings` points at; `stand_ins` when they are the latency stand-ins."""
    studio = build_studio(settings, public_url=PUBLIC_URL)
    try:
        if stand_ins is None:
            await warm_up(studio, photo)
        await warm_up_book(studio, options)
        sequential_started = time.perf_counter()
        sequential = await run_sequential(studio, photo, options)
        sequential_calls = stand_ins.log.since(sequential_started) if stand_ins else []
        async with httpx.AsyncClient() as http:
            before = batch_counters((await http.get(settings.illustrate_url + "/metrics")).text, "illustrate")
            fabula_started = time.perf_counter()
            fabula = await run_fabula(studio, photo, options)
            after = batch_counters((await http.get(settings.illustrate_url + "/metrics")).text, "illustrate")
        config = studio.pipeline.config
    finally:
        await studio.aclose()
    images = options.pages + 1
    image_calls, image_requests = after[0] - before[0], after[1] - before[1]
    critical = None
    sequential_injected = None
    llm_calls: dict[str, int] = {}
    llm_peak = None
    if stand_ins is not None:
        fabula_calls = stand_ins.log.since(fabula_started)
        critical = critical_path(fabula_calls, stand_ins.profile, fabula, images)
        sequential_injected = sum(call.injected_seconds for call in sequential_calls) + sequential.stages.get("book", 0.0)
        llm_calls = dict(Counter(call.name for call in fabula_calls if call.service == "llm"))
        llm_peak = peak_in_flight(fabula_calls, "llm")
    report = BookReport(
        mode=mode, machine=machine_description(), pages=options.pages, language=options.language, images=images,
        image_size=config.image_size, image_steps=config.image_steps, max_concurrent_images=config.max_concurrent_images,
        profile=stand_ins.profile if stand_ins else None, sequential=sequential, fabula=fabula,
        image_calls=int(image_calls), image_requests=int(image_requests), critical_path=critical,
        sequential_injected_seconds=sequential_injected, llm_calls=llm_calls, llm_peak_in_flight=llm_peak,
    )
    return assess(report)


def run_latency(profile: LatencyProfile, options: StoryOptions, photo: bytes) -> BookReport:
    with tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        # The gpu profile's length budgets and picture size, as in a real deployment.
        base = Settings(profile=Profile.gpu, data_dir=Path(folder) / "data", cache_dir=Path(folder) / "cache", api_key=None)
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
    latency.add_argument("--string-chars", type=int, default=defaults.string_chars, help="characters per generated string")
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
            batch_window_ms=args.window_ms, string_chars=args.string_chars,
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

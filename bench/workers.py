"""Books per minute with 1, 2 and 4 `fabula worker`s (the scale-out mode) against the latency stand-ins.

Real PostgreSQL and Redis on loopback, real worker processes; the model services are the stand-ins
(bench/latency_services.py), which sleep for a GPU deployment's service times and batch like the real services,
so what is measured is how books spread over workers. Goal: near-linear (books per minute ∝ workers) while the
services have room.

    python -m bench.workers --workers 1 2 4 --books 8 --pages 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import Postgres, Redis, scratch_folder, servers_available, worker
from bench.latency_services import LatencyProfile, LatencyServices
from shared.settings import Profile, Settings
from webapp.story.options import StoryOptions

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "assets" / "photo.jpg"


@dataclass(frozen=True)
class Throughput:
    workers: int
    books: int
    seconds: float

    @property
    def books_per_minute(self) -> float:
        return 60.0 * self.books / self.seconds


async def _make_books(settings: Settings, books: int, options: StoryOptions) -> float:
    from webapp.jobs.models import JobStatus
    from webapp.workshop import build_workshop

    workshop = build_workshop(settings, public_url="http://127.0.0.1:7860")
    try:
        photo = PHOTO.read_bytes()
        started = time.perf_counter()
        ids = [workshop.stories.submit(photo, options.model_copy(update={"seed": index})).id for index in range(books)]
        for job_id in ids:
            record = await workshop.stories.wait(job_id)
            if record.status != JobStatus.done:
                raise RuntimeError(f"a benchmark book failed: {record.error}")
        return time.perf_counter() - started
    finally:
        await workshop.aclose()


def run(worker_counts: list[int], *, books: int, pages: int, concurrency: int, profile: LatencyProfile) -> list[Throughput]:
    if not servers_available():
        raise SystemExit("needs the Debian packages postgresql and redis-server")
    results = []
    options = StoryOptions(pages=pages, language="fr", narrate=False, character_names=["Mia"])
    for count in worker_counts:
        folder = scratch_folder()
        postgres, redis = Postgres(folder / "postgres").start(), Redis().start()
        with tempfile.TemporaryDirectory(prefix="fabula-bench-") as cache:
            base = Settings(
                profile=Profile.gpu, data_dir=folder / "data", cache_dir=Path(cache), api_key=None, database_url=postgres.url,
                broker_url=redis.url, max_queued_jobs=books + 1, job_lease_s=30,
            )
            stand_ins = LatencyServices(base, profile)
            settings = stand_ins.start()
            environment = {
                "FABULA_PROFILE": "gpu", "FABULA_DATA_DIR": str(base.data_dir), "FABULA_CACHE_DIR": cache,
                "FABULA_DATABASE_URL": postgres.url, "FABULA_BROKER_URL": redis.url, "FABULA_LOG_LEVEL": "ERROR",
                "FABULA_CAPTION_URL": settings.caption_url, "FABULA_ILLUSTRATE_URL": settings.illustrate_url, "FABULA_LLM_URL": settings.llm_url,
            }
            workers = []
            try:
                asyncio.run(_warm_schema(settings))
                workers = [worker(f"worker-{index}", environment, folder, concurrency=concurrency, profile="gpu") for index in range(count)]
                seconds = asyncio.run(_make_books(settings, books, options))
                results.append(Throughput(count, books, seconds))
            finally:
                for process in workers:
                    process.stop()
                stand_ins.stop()
                redis.stop()
                postgres.stop()
    return results


async def _warm_schema(settings: Settings) -> None:
    from webapp.jobs.database import open_database

    open_database(settings).dispose()


def report(results: list[Throughput]) -> str:
    base = results[0].books_per_minute / results[0].workers
    lines = ["| workers | books | seconds | books / minute | vs. linear |", "|---|---|---|---|---|"]
    for result in results:
        linear = result.books_per_minute / (base * result.workers)
        lines.append(f"| {result.workers} | {result.books} | {result.seconds:.1f} | {result.books_per_minute:.1f} | {linear:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--books", type=int, default=8)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="books each worker makes at once")
    parser.add_argument("--image-seconds", type=float, default=2.0)
    parser.add_argument("--llm-ms-per-token", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    profile = LatencyProfile(image_seconds_per_call=args.image_seconds, llm_seconds_per_token=args.llm_ms_per_token / 1000)
    results = run(args.workers, books=args.books, pages=args.pages, concurrency=args.concurrency, profile=profile)
    print(report(results))
    if args.json:
        rows = [{"workers": r.workers, "books": r.books, "seconds": r.seconds, "books_per_minute": r.books_per_minute} for r in results]
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

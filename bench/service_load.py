"""Per-request latency (p50/p95) and throughput of one running service at fixed concurrency levels.

Shared by bench/illustrate.py and bench/caption.py: they supply the request; this module warms the service up,
runs each level, reads the service's own batch-size counters from /metrics, and prints the table.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
from pydantic import BaseModel

from bench.common import CONCURRENCY_LEVELS, LoadLevel, batch_counters, load_rows, machine_description, markdown_table, run_level, text_table
from shared.settings import Profile, Settings


class LoadReport(BaseModel):
    service: str
    url: str
    machine: str
    request: str
    levels: list[LoadLevel]


async def measure_service(
    service: str, url: str, call: Callable[[int], Awaitable[int]], *, request: str,
    levels: Sequence[int] = CONCURRENCY_LEVELS, requests_per_level: int = 8, warm_up: int = 1,
) -> LoadReport:
    """Run every concurrency level against `url`; each level sends max(requests_per_level, 2 × concurrency) requests."""
    for index in range(warm_up):
        await call(-1 - index)
    results: list[LoadLevel] = []
    async with httpx.AsyncClient(timeout=30.0) as http:
        for concurrency in levels:
            before = batch_counters((await http.get(f"{url}/metrics")).text, service)
            level = await run_level(call, concurrency=concurrency, requests=max(requests_per_level, 2 * concurrency))
            after = batch_counters((await http.get(f"{url}/metrics")).text, service)
            calls, served = after[0] - before[0], after[1] - before[1]
            level.mean_batch_size = served / calls if calls else None
            results.append(level)
    return LoadReport(service=service, url=url, machine=machine_description(), request=request, levels=results)


def render(report: LoadReport, *, markdown: bool) -> str:
    headers, rows = load_rows(report.levels)
    title = f"{report.service} at {report.url} ({report.request}); {report.machine}"
    if markdown:
        return f"**{title}**\n\n{markdown_table(headers, rows)}"
    return f"{title}\n{text_table(headers, rows)}"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8102")
    where.add_argument("--start-tiny", action="store_true", help="start the tiny-profile service in this process")
    where.add_argument("--start-latency", action="store_true", help="start the latency-injected stand-in (benchmark only)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY_LEVELS))
    parser.add_argument("--requests", type=int, default=8, help="requests per level (at least 2 × concurrency)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for a service started here with --start-tiny")
    parser.add_argument("--api-key", default=None, help="bearer token when the service has FABULA_API_KEY set")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", default=None, help="also write the report as JSON to this path")


def service_url(args: argparse.Namespace, service: str, stack: ExitStack, folder: str) -> str:
    """The URL to measure: `--url`, or a service started here (tiny or stand-in) that `stack` stops."""
    if args.url:
        return args.url.rstrip("/")
    if args.start_latency:
        from bench.latency_services import LatencyServices

        stand_ins = LatencyServices(Settings(data_dir=Path(folder) / "data", cache_dir=Path(folder) / "cache", api_key=None))
        settings = stand_ins.start()
        stack.callback(stand_ins.stop)
        return getattr(settings, f"{service}_url")
    from bench.gpu_common import limit_cpu_threads
    from webapp.launcher import InProcessServices

    limit_cpu_threads(args.threads)
    base = Settings(profile=Profile.tiny, data_dir=Path(folder) / "data", api_key=None)
    services = InProcessServices(base, names=(service,))
    settings = services.start()
    stack.callback(services.stop)
    return getattr(settings, f"{service}_url")


def finish(report: LoadReport, args: argparse.Namespace) -> None:
    print(render(report, markdown=args.markdown))
    if args.json:
        Path(args.json).write_text(report.model_dump_json(indent=2), encoding="utf-8")


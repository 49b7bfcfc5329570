"""What the benchmarks share: timing a run by stage, load generation at fixed concurrency, percentiles, tables,
and a one-line description of the machine a number was measured on."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel, Field

CONCURRENCY_LEVELS = (1, 2, 4, 8)
T = TypeVar("T")


# ---- timing a run by stage -------------------------------------------------------------------------------
class RunResult(BaseModel):
    """One book made one way: the wall time, seconds per stage, and when the first story page was finished."""

    name: str
    total_seconds: float
    stages: dict[str, float]
    first_page_seconds: float | None = None
    pages: int


class StageClock:
    """Times named stages of a run that do not overlap (a sequential run)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    async def timed(self, stage: str, step: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            return await step
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - began

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# ---- load at fixed concurrency ---------------------------------------------------------------------------
class LoadLevel(BaseModel):
    concurrency: int
    requests: int
    failures: int
    p50_seconds: float
    p95_seconds: float
    mean_seconds: float
    wall_seconds: float
    throughput_per_second: float = Field(description="Finished requests per second of wall time.")
    items_per_second: float = Field(description="Images or captions per second (a request may hold several).")
    mean_batch_size: float | None = Field(default=None, description="Requests per model call, from the service's /metrics.")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (`fraction` in 0..1) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


async def run_level(call: Callable[[int], Awaitable[int]], *, concurrency: int, requests: int) -> LoadLevel:
    """Run `requests` calls with `concurrency` in flight at all times; `call(index)` returns its item count."""
    latencies: list[float] = []
    items = 0
    failures = 0
    next_index = 0

    async def worker() -> None:
        nonlocal items, failures, next_index
        while next_index < requests:
            index = next_index
            next_index += 1
            began = time.perf_counter()
            try:
                count = await call(index)
            except Exception:  # noqa: BLE001 - a failed request is counted, the load goes on
                failures += 1
                continue
            latencies.append(time.perf_counter() - began)
            items += count

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    if not latencies:
        raise RuntimeError(f"all {requests} requests failed at concurrency {concurrency}")
    return LoadLevel(
        concurrency=concurrency, requests=requests, failures=failures, p50_seconds=percentile(latencies, 0.5),
        p95_seconds=percentile(latencies, 0.95), mean_seconds=sum(latencies) / len(latencies), wall_seconds=wall,
        throughput_per_second=len(latencies) / wall, items_per_second=items / wall,
    )


def batch_counters(metrics_text: str, service: str) -> tuple[float, float]:
    """(pipeline calls, requests served by them) from a service's Prometheus text: the batch-size histogram."""
    calls = served = 0.0
    for line in metrics_text.splitlines():
        if f'service="{service}"' not in line:
            continue
        if line.startswith("fabula_batch_size_count"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("fabula_batch_size_sum"):
            served += float(line.rsplit(" ", 1)[1])
    return calls, served


# ---- tables --------------------------------------------------------------------------------------------
def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(header) for header in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(str(header) for header in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def load_rows(levels: Sequence[LoadLevel]) -> tuple[list[str], list[list[object]]]:
    headers = ["concurrency", "requests", "p50 s", "p95 s", "requests/s", "items/s", "mean batch", "failures"]
    rows = [
        [level.concurrency, level.requests, level.p50_seconds, level.p95_seconds, level.throughput_per_second,
         level.items_per_second, level.mean_batch_size, level.failures]
        for level in levels
    ]
    return headers, rows


def machine_description() -> str:
    """CPU count, memory and accelerator, e.g. "2-core CPU, 24 GiB, no GPU (torch 2.13.0)"."""
    import torch

    memory = ""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * page_size / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU{memory}, {accelerator} (torch {torch.__version__}, Python {platform.python_version()})"


def quiet_libraries() -> None:
    """Keep a benchmark's output to its tables: no progress bars, no per-call library warnings (e.g. CLIP's
    77-token truncation notice for every picture), only errors from loggers."""
    import logging
    import warnings

    # transformers' deprecation notices (e.g. `past_key_values`, once per generation) say nothing about the timings.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.ERROR)
    try:
        import diffusers
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        diffusers.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - both are dependencies
        pass

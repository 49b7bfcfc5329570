"""The workers benchmark's harness on the CPU: real PostgreSQL, Redis and worker processes against fast latency
stand-ins; it makes every book and reports books per minute for each worker count."""

from __future__ import annotations

import pytest

from bench.cluster import servers_available
from bench.latency_services import LatencyProfile
from bench.workers import report, run

pytestmark = [pytest.mark.scale, pytest.mark.skipif(not servers_available(), reason="needs the Debian packages postgresql and redis-server")]

FAST = LatencyProfile(caption_seconds=0.05, llm_seconds_per_token=0.0005, image_seconds_per_call=0.1, batch_window_ms=5, image_pixels=32)


def test_books_per_minute_are_measured_for_each_worker_count() -> None:
    results = run([1, 2], books=2, pages=1, concurrency=1, profile=FAST)
    assert [result.workers for result in results] == [1, 2]
    assert all(result.books == 2 and result.seconds > 0 and result.books_per_minute > 0 for result in results)
    table = report(results)
    assert table.splitlines()[0].startswith("| workers |") and len(table.splitlines()) == 4

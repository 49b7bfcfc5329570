"""Latency (p50/p95) and throughput of the caption service at concurrency 1, 2, 4 and 8.

    python bench/caption.py --url http://127.0.0.1:8101        # a running service, any profile
    python bench/caption.py --start-tiny                       # the tiny service, in this process

Every request sends the same photo; "mean batch" is the service's own requests-per-model-call from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import quiet_libraries  # noqa: E402
from bench.service_load import LoadReport, add_common_arguments, finish, measure_service, service_url  # noqa: E402
from shared.clients import CaptionClient, RetryPolicy  # noqa: E402

DEFAULT_PHOTO = Path(__file__).resolve().parent.parent / "webapp" / "samples" / "cat.jpg"


async def measure_caption(url: str, *, photo: bytes, max_new_tokens: int | None, levels: list[int], requests_per_level: int,
                          api_key: str | None = None) -> LoadReport:
    client = CaptionClient(url, api_key=api_key, retry=RetryPolicy(attempts=1))

    async def call(index: int) -> int:
        await client.caption(photo, max_new_tokens=max_new_tokens)
        return 1

    try:
        return await measure_service("caption", url, call, levels=levels, requests_per_level=requests_per_level,
                                     request=f"{len(photo):,}-byte photo, max_new_tokens={max_new_tokens or 'service default'}")
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    args = parser.parse_args(argv)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        url = service_url(args, "caption", stack, folder)
        report = asyncio.run(measure_caption(url, photo=args.photo.read_bytes(), max_new_tokens=args.max_new_tokens,
                                             levels=args.concurrency, requests_per_level=args.requests, api_key=args.api_key))
    finish(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

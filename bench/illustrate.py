"""Latency (p50/p95) and throughput of the illustrate service at concurrency 1, 2, 4 and 8.

    python bench/illustrate.py --url http://127.0.0.1:8102 --size 1024x1024     # a running service, any profile
    python bench/illustrate.py --start-tiny                                     # the tiny service, in this process

Every request asks for `--n` images of `--size`; "items/s" counts images. "mean batch" is the service's own
requests-per-pipeline-call, read from its /metrics, so it shows whether concurrent requests were batched.
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
from shared.clients import IllustrateClient, RetryPolicy  # noqa: E402
from shared.schemas import ImageGenerationRequest  # noqa: E402

PROMPT = "A watercolor storybook illustration of a small fox reading a book under a tree at night, soft light"


async def measure_illustrate(url: str, *, size: str, steps: int | None, images_per_request: int, levels: list[int],
                             requests_per_level: int, api_key: str | None = None) -> LoadReport:
    client = IllustrateClient(url, api_key=api_key, retry=RetryPolicy(attempts=1))

    async def call(index: int) -> int:
        request = ImageGenerationRequest(prompt=PROMPT, n=images_per_request, size=size, num_inference_steps=steps,
                                         seed=max(index, 0), response_format="b64_json")
        response = await client.generate(request)
        return len(response.data)

    try:
        return await measure_service("illustrate", url, call, levels=levels, requests_per_level=requests_per_level,
                                     request=f"n={images_per_request}, {size}, steps={steps or 'service default'}")
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT; default 64x64 with --start-tiny, else 1024x1024")
    parser.add_argument("--steps", type=int, default=None, help="inference steps; default 4 with --start-tiny, else the service's")
    parser.add_argument("--n", type=int, default=1, help="images per request")
    args = parser.parse_args(argv)
    size = args.size or ("64x64" if args.start_tiny else "1024x1024")
    steps = args.steps or (4 if args.start_tiny else None)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fabula-bench-") as folder:
        url = service_url(args, "illustrate", stack, folder)
        report = asyncio.run(measure_illustrate(url, size=size, steps=steps, images_per_request=args.n, levels=args.concurrency,
                                                requests_per_level=args.requests, api_key=args.api_key))
    finish(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Upscale time per picture, as a print book asks for it: each painted picture to 300 dpi at the widest a page
prints it (2100 px across on an 8.5-inch page), through the illustrate service's own `Upscaler`.

    python bench/upscale.py                                   # CPU: the tiny stand-in and the Lanczos filter
    python bench/upscale.py --device cuda --real-architecture # GPU: Real-ESRGAN x4's full-size RRDBNet, random weights

`--real-architecture` builds RRDBNet at Real-ESRGAN x4's published size (64 features, 23 blocks, 32 growth
channels; 16.7 M parameters) with random weights, saves it and loads it back through spandrel, so the timing is the
real model's without its download. Each row warms up once, then reports the median of `--repeats` calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bench.common import machine_description, markdown_table, quiet_libraries  # noqa: E402
from services.illustrate.tiny_upscaler import build_tiny_upscaler  # noqa: E402
from services.illustrate.upscale_requests import UpscaleJob, plan_upscale  # noqa: E402
from services.illustrate.upscaler import Upscaler  # noqa: E402
from shared.settings import Settings  # noqa: E402

PRINT_WIDTH = 2100  # 7 in of picture at 300 dpi: a square 8.5-inch or Letter page's text width


def _real_esrgan_x4(folder: Path) -> Path:
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN  # type: ignore[import-untyped]  # ships no type hints

    model = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    path = folder / "real-esrgan-x4-random.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))
    return path


def _time(upscaler: Upscaler, source: int, batch: int, repeats: int) -> float:
    picture = Image.effect_noise((source, source), 40).convert("RGB")
    plan = plan_upscale((source, source), (PRINT_WIDTH, PRINT_WIDTH), upscaler.model_scale)
    jobs = [UpscaleJob(picture, plan) for _ in range(batch)]
    upscaler.upscale(jobs)  # warm-up: the first call at a shape is slower
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        upscaler.upscale(jobs)
        if upscaler.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-architecture", action="store_true", help="Full-size Real-ESRGAN x4 (random weights) instead of the CPU rows.")
    parser.add_argument("--sources", default="64,512,1024", help="Painted sizes to upscale to 2100 px (tiny 64, cpu 512, gpu 1024).")
    parser.add_argument("--batches", default="1", help="Pictures per call, e.g. 1,2,4.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    quiet_libraries()
    settings = Settings()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as folder:
        if args.real_architecture:
            upscalers = [Upscaler.load("Real-ESRGAN x4 (random weights)", _real_esrgan_x4(Path(folder)), device=args.device, settings=settings)]
        else:
            tiny = build_tiny_upscaler(Path(folder) / "tiny")
            upscalers = [
                Upscaler.load("tiny stand-in", tiny, device=args.device, settings=settings),
                Upscaler.load("lanczos", None, device=args.device, settings=settings),
            ]
        for upscaler in upscalers:
            for source in (int(size) for size in args.sources.split(",")):
                for batch in (int(size) for size in args.batches.split(",")):
                    plan = plan_upscale((source, source), (PRINT_WIDTH, PRINT_WIDTH), upscaler.model_scale)
                    seconds = _time(upscaler, source, batch, args.repeats)
                    dtype = str(upscaler.dtype).removeprefix("torch.")
                    rows.append([upscaler.model_id, dtype, f"{source}→{PRINT_WIDTH}", plan.passes, batch, f"{seconds:.3f}"])
    print(f"Machine: {machine_description()}; device {args.device}")
    print(markdown_table(["upscaler", "dtype", "pixels", "model passes", "batch", "s per picture"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

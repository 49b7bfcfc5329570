"""GPU harness: full-size SDXL base + refiner with random weights, the stock diffusers recipe against Fabula's
illustrate engine in one run, priced against the FLOP floor at the measured matmul rate.

    python bench/gpu_sdxl.py                          # cuda, fp16, 1024², 40 steps, hand-off 0.8, batch 1 and 4
    python bench/gpu_sdxl.py --with-llava             # … plus peak memory with LLaVA-1.5-13B on the same GPU
    python bench/gpu_sdxl.py --tiny                   # the same harness on the CPU with the tiny configs

Random weights paint noise, but every layer does the work the real checkpoints do, so the timings hold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel  # noqa: E402

from bench.common import (  # noqa: E402
    machine_description,
    markdown_table,
    quiet_libraries,
    text_table,
)
from bench.gpu_common import (  # noqa: E402
    DTYPES,
    MemoryReading,
    limit_cpu_threads,
    matmul_tflops,
    peak_memory,
    release,
    reset_peak_memory,
    timed_runs,
)
from bench.sdxl_configs import FULL_SIZE_IMAGE_TFLOP, write_full_sdxl  # noqa: E402
from bench.sdxl_recipes import FabulaRecipe, StockRecipe, step_flops  # noqa: E402

STOCK_LABEL = "stock diffusers (base → images → refiner img2img)"
FABULA_LABEL = "Fabula engine (hand-off)"


class SdxlTiming(BaseModel):
    recipe: str
    batch: int
    seconds_per_batch: float
    seconds_per_image: float
    ratio_to_stock: float | None = None
    ratio_to_floor: float


class SdxlReport(BaseModel):
    mode: str
    machine: str
    device: str
    dtype: str
    size: int
    steps: int
    refiner_start: float
    base_steps: int
    refiner_steps: int
    matmul_tflops: float
    fabula_tflop_per_image: float
    stock_tflop_per_image: float
    floor_tflop_per_image: float
    floor_seconds_per_image: float
    optimisations: list[str]
    timings: list[SdxlTiming]
    memory_fabula: MemoryReading | None = None
    memory_all_three: MemoryReading | None = None
    llava: dict | None = None


def prepare_checkpoints(*, tiny: bool, work_dir: Path, device: str, dtype_name: str) -> Path:
    """The folder holding `base/` and `refiner/`: the tests' tiny SDXL, or full size with random weights."""
    if tiny:
        from services.illustrate.tiny import build_tiny_sdxl

        return build_tiny_sdxl(work_dir / "tiny-sdxl")
    return write_full_sdxl(work_dir / "full-sdxl", device=device, dtype=DTYPES[dtype_name])


def time_batches(paint: Callable[[int, int], object], batches: list[int], *, steps: int, device: str, repeats: int) -> dict[int, float]:
    """Fastest of `repeats` synchronised runs per batch size; a short untimed run first pays for the new shape."""
    seconds: dict[int, float] = {}
    for batch in batches:
        paint(batch, min(steps, 4))
        seconds[batch] = min(timed_runs(partial(paint, batch, steps), device=device, repeats=repeats))
    return seconds


def run_harness(folder: Path, *, tiny: bool, device: str, dtype_name: str, size: int, steps: int, refiner_start: float,
                batches: list[int], repeats: int, with_llava: bool = False, compile_unet: bool = False) -> SdxlReport:
    """Time the stock recipe, then Fabula's engine, on the checkpoints in `folder`; both at every batch size."""
    from shared.settings import Settings

    dtype = DTYPES[dtype_name]
    rate = matmul_tflops(device, dtype, size=512 if tiny else 8192)

    stock = StockRecipe(folder, device=device, dtype=dtype)
    stock_seconds = time_batches(lambda batch, count: stock.paint(batch, size=size, steps=count), batches,
                                 steps=steps, device=device, repeats=repeats)
    stock.close()
    release(device)

    reset_peak_memory(device)
    settings = Settings(refiner_start=refiner_start, default_inference_steps=steps, torch_compile=compile_unet)
    fabula = FabulaRecipe(folder, device=device, settings=settings)
    fabula_seconds = time_batches(lambda batch, count: fabula.paint(batch, size=size, steps=count, refiner_start=refiner_start), batches,
                                  steps=steps, device=device, repeats=repeats)
    memory_fabula = peak_memory(device)

    base_steps, refiner_steps = fabula.engine.handoff_steps(steps, refiner_start)
    flops = step_flops(folder, size=size, guided=fabula.engine.defaults.guidance_scale > 1.0)
    fabula_tflop = flops.hand_off(base_steps, refiner_steps) / 1e12
    full_size_reference = not tiny and size == 1024 and steps == 40 and refiner_start == 0.8
    floor_tflop = FULL_SIZE_IMAGE_TFLOP if full_size_reference else fabula_tflop
    floor_seconds = floor_tflop / rate
    timings: list[SdxlTiming] = []
    for batch in batches:
        stock_image, fabula_image = stock_seconds[batch] / batch, fabula_seconds[batch] / batch
        timings.append(SdxlTiming(recipe=STOCK_LABEL, batch=batch, seconds_per_batch=stock_seconds[batch],
                                  seconds_per_image=stock_image, ratio_to_floor=stock_image / floor_seconds))
        timings.append(SdxlTiming(recipe=FABULA_LABEL, batch=batch, seconds_per_batch=fabula_seconds[batch], seconds_per_image=fabula_image,
                                  ratio_to_stock=fabula_image / stock_image, ratio_to_floor=fabula_image / floor_seconds))

    memory_all, llava = (peak_memory_with_llava(fabula, tiny=tiny, device=device, size=size, steps=steps, refiner_start=refiner_start,
                                                batch=max(batches)) if with_llava else (None, None))
    optimisations = list(fabula.engine.optimisations)
    fabula.close()
    release(device)
    return SdxlReport(
        mode="tiny" if tiny else "full size", machine=machine_description(), device=device, dtype=dtype_name, size=size, steps=steps,
        refiner_start=refiner_start, base_steps=base_steps, refiner_steps=refiner_steps, matmul_tflops=rate,
        fabula_tflop_per_image=fabula_tflop, stock_tflop_per_image=flops.stock(steps) / 1e12, floor_tflop_per_image=floor_tflop,
        floor_seconds_per_image=floor_seconds, optimisations=optimisations, timings=timings,
        memory_fabula=memory_fabula, memory_all_three=memory_all, llava=llava,
    )


def peak_memory_with_llava(fabula: FabulaRecipe, *, tiny: bool, device: str, size: int, steps: int, refiner_start: float,
                           batch: int) -> tuple[MemoryReading | None, dict]:
    """Load LLaVA (13B, or tiny) beside the engine, caption a batch of 8 and paint a batch: the peak of all three."""
    from bench.gpu_llava import caption_inputs, llava_config, load_llava, time_caption

    model = load_llava(llava_config(tiny=tiny), device=device, dtype=DTYPES["bf16"] if device.startswith("cuda") else DTYPES["fp32"])
    reset_peak_memory(device)
    seconds = time_caption(model, caption_inputs(model.config, batch=8, device=device), new_tokens=128, device=device, repeats=1)
    fabula.paint(batch, size=size, steps=steps, refiner_start=refiner_start)
    memory = peak_memory(device)
    del model
    return memory, {"caption_batch": 8, "new_tokens": 128, "caption_seconds": seconds, "paint_batch": batch}


def render(report: SdxlReport, *, markdown: bool) -> str:
    headers = ["recipe", "batch", "s per batch", "s per image", "× stock", "× FLOP floor"]
    rows = [[t.recipe, t.batch, t.seconds_per_batch, t.seconds_per_image, t.ratio_to_stock, t.ratio_to_floor] for t in report.timings]
    lines = [
        f"SDXL base + refiner ({report.mode}), {report.size}², {report.steps} steps, hand-off {report.refiner_start} "
        f"({report.base_steps} base + {report.refiner_steps} refiner steps), {report.dtype} on {report.device}",
        f"machine: {report.machine}",
        f"matmul rate: {report.matmul_tflops:.2f} TFLOP/s; FLOPs per image: Fabula {report.fabula_tflop_per_image:.4g} TFLOP, "
        f"stock {report.stock_tflop_per_image:.4g} TFLOP; floor {report.floor_tflop_per_image:.4g} TFLOP = {report.floor_seconds_per_image:.4g} s",
        f"engine switches: {', '.join(report.optimisations) or 'none'}",
    ]
    readings = (("peak memory, illustrate engine", report.memory_fabula), ("peak memory, LLaVA + base + refiner", report.memory_all_three))
    for label, memory in readings:
        if memory:
            lines.append(f"{label}: {memory.peak_allocated_gib:.1f} GiB allocated, {memory.peak_reserved_gib:.1f} GiB reserved "
                         f"of {memory.device_total_gib:.0f} GiB")
    if report.llava:
        lines.append(f"with all three loaded: LLaVA caption batch {report.llava['caption_batch']} × {report.llava['new_tokens']} tokens "
                     f"in {report.llava['caption_seconds']:.2f} s, then a painting batch of {report.llava['paint_batch']}")
    table = markdown_table(headers, rows) if markdown else text_table(headers, rows)
    if markdown:
        return "\n".join(f"- {line}" for line in lines) + "\n\n" + table
    return "\n".join(lines) + "\n\n" + table


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (64², 8 steps) to check the harness")
    parser.add_argument("--device", default=None, help="default cuda, or cpu with --tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default fp16, or fp32 with --tiny")
    parser.add_argument("--size", type=int, default=None, help="default 1024, or 64 with --tiny")
    parser.add_argument("--steps", type=int, default=None, help="default 40, or 8 with --tiny")
    parser.add_argument("--refiner-start", type=float, default=0.8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per batch size (the fastest is kept)")
    parser.add_argument("--with-llava", action="store_true", help="also load LLaVA-1.5-13B and report peak memory with all three")
    parser.add_argument("--compile", action="store_true", help="FABULA_TORCH_COMPILE for the engine (minutes of compilation)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the random checkpoints are written (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on the CPU: see gpu_common.limit_cpu_threads)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    limit_cpu_threads(args.threads or (1 if device == "cpu" else None))
    dtype_name = args.dtype or ("fp32" if device == "cpu" else "fp16")
    with tempfile.TemporaryDirectory(prefix="fabula-gpu-bench-") as temporary:
        folder = prepare_checkpoints(tiny=args.tiny, work_dir=args.work_dir or Path(temporary), device=device, dtype_name=dtype_name)
        report = run_harness(
            folder, tiny=args.tiny, device=device, dtype_name=dtype_name, size=args.size or (64 if args.tiny else 1024),
            steps=args.steps or (8 if args.tiny else 40), refiner_start=args.refiner_start, batches=args.batches,
            repeats=args.repeats, with_llava=args.with_llava, compile_unet=args.compile,
        )
    print(render(report, markdown=args.markdown))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

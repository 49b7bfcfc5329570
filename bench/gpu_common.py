"""Timing on an accelerator: synchronised wall clocks, the measured matmul rate, peak memory, FLOP counts.

Everything also works on the CPU (the harness's `--tiny` mode), where synchronisation is a no-op and peak
memory is not reported.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class MemoryReading(BaseModel):
    peak_allocated_gib: float
    peak_reserved_gib: float
    device_total_gib: float


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed_runs(run: Callable[[], Any], *, device: str, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `run`, each synchronised before and after."""
    seconds: list[float] = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        run()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def matmul_tflops(device: str, dtype: torch.dtype, *, size: int, repeats: int = 10) -> float:
    """Dense matmul throughput in TFLOP/s at `size`³, the rate the FLOP floor is priced at."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(2):
            torch.matmul(left, right)
        seconds = timed_runs(lambda: [torch.matmul(left, right) for _ in range(repeats)], device=device, repeats=3)
    return 2 * size**3 * repeats / min(seconds) / 1e12


def count_flops(run: Callable[[], Any]) -> int:
    """FLOPs of the matmuls, convolutions and attention `run` performs (PyTorch's own flop counter)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        run()
    return counter.get_total_flops()


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> MemoryReading | None:
    if not device.startswith("cuda"):
        return None
    return MemoryReading(
        peak_allocated_gib=torch.cuda.max_memory_allocated(device) / 2**30,
        peak_reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30,
        device_total_gib=torch.cuda.get_device_properties(device).total_memory / 2**30,
    )


def release(device: str) -> None:
    """Give freed tensors back (after `del`), so the next measurement starts from what is really held."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def limit_cpu_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads for CPU runs. On a shared 2-core machine, two spinning threads per process
    made the tiny SDXL pipeline 17× slower (15 s against 0.85 s for one picture) once other jobs held the cores."""
    if threads:
        torch.set_num_threads(threads)

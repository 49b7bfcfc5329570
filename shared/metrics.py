"""Prometheus metrics for one service: request latency, queue wait, batch size, pipeline calls, dropped requests,
GPU memory.

Each app owns its registry, so several services can live in one test process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "fabula_request_seconds", "Time to answer an HTTP request.", ["service", "route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_wait_seconds = Histogram(
            "fabula_queue_wait_seconds", "Time a request waited before its model work started.", ["service"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "fabula_batch_size", "Requests served by one pipeline call.", ["service"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.pipeline_calls = Counter(
            "fabula_pipeline_calls", "Model pipeline invocations.", ["service"], registry=self.registry,
        )
        self.generated_items = Counter(
            "fabula_generated_items", "Captions, images or completions produced.", ["service"], registry=self.registry,
        )
        self.flagged_items = Counter(
            "fabula_pictures_flagged", "Pictures the image safety classifier flagged (answered as calm placeholders).", ["service"], registry=self.registry,
        )
        self.dropped_requests = Counter(
            "fabula_requests_dropped", "Queued requests never run: their client left, or their deadline passed.",
            ["service", "reason"], registry=self.registry,
        )
        self.in_flight = Gauge("fabula_requests_in_flight", "Requests being answered now.", ["service"], registry=self.registry)
        self.gpu_memory_bytes = Gauge(
            "fabula_gpu_memory_bytes", "GPU memory held by this process.", ["service", "device", "kind"], registry=self.registry,
        )

    def observe_batch(self, size: int, queue_waits: list[float]) -> None:
        self.pipeline_calls.labels(self.service).inc()
        self.batch_size.labels(self.service).observe(size)
        for wait in queue_waits:
            self.queue_wait_seconds.labels(self.service).observe(wait)

    def observe_dropped(self, reason: str, count: int = 1) -> None:
        self.dropped_requests.labels(self.service, reason).inc(count)

    def render(self) -> bytes:
        self._refresh_gpu_memory()
        return generate_latest(self.registry)

    def _refresh_gpu_memory(self) -> None:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        if not torch.cuda.is_available():
            return
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            self.gpu_memory_bytes.labels(self.service, device, "allocated").set(torch.cuda.memory_allocated(index))
            self.gpu_memory_bytes.labels(self.service, device, "reserved").set(torch.cuda.memory_reserved(index))
            self.gpu_memory_bytes.labels(self.service, device, "peak").set(torch.cuda.max_memory_allocated(index))

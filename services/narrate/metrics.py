"""Speech metrics beside the service's common ones: time spent making audio, and how much audio came out.

Their ratio is the real-time factor a capacity plan needs; both live in the service's own registry.
"""

from __future__ import annotations

from prometheus_client import Histogram

from shared.metrics import LATENCY_BUCKETS, ServiceMetrics

AUDIO_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class SpeechMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self.service = metrics.service
        self.synthesis_seconds = Histogram(
            "fabula_speech_synthesis_seconds", "Time one request's audio took to make: speech and encoding.",
            ["service", "engine", "format"], buckets=LATENCY_BUCKETS, registry=metrics.registry,
        )
        self.audio_seconds = Histogram(
            "fabula_speech_audio_seconds", "Length of the audio one request returned.", ["service", "engine"],
            buckets=AUDIO_BUCKETS, registry=metrics.registry,
        )

    def observe(self, *, engine: str, audio_format: str, synthesis_seconds: float, audio_seconds: float) -> None:
        self.synthesis_seconds.labels(self.service, engine, audio_format).observe(synthesis_seconds)
        self.audio_seconds.labels(self.service, engine).observe(audio_seconds)

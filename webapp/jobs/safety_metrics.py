"""The web app's safety counters, exported at its `/metrics`: pictures flagged and replaced, pages reported."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry()


@dataclass(frozen=True)
class SafetyCounters:
    flagged: Counter
    replaced: Counter
    reported: Counter


SAFETY = SafetyCounters(
    flagged=Counter("fabula_pictures_flagged_total", "Pictures the image safety classifier flagged (each is painted again).", registry=REGISTRY),
    replaced=Counter("fabula_pictures_replaced_total", "Pictures still flagged after every repaint, replaced by a calm placeholder.", registry=REGISTRY),
    reported=Counter("fabula_pages_reported_total", "Pages readers reported.", ["action"], registry=REGISTRY),
)

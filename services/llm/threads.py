"""How many compute threads llama.cpp should use right now: measured, not guessed (pure apart from the clock).

llama.cpp's compute threads spin while they wait for each other, so when another process holds a core the whole
forward pass waits for the descheduled thread: on two cores with two busy neighbours, SmolLM2 fell from 150 tokens a
second (two threads, idle machine) to 5, where one thread kept 63. No fixed count is right for a machine whose other
services come and go (a book's pictures, its narration, another book), so the engine keeps the count that is fastest
now: it serves with the best known count, and every `explore_every_s` seconds it tries another for a few forward
passes, abandoning the try at once when a pass is much slower than the current best. A pass's cost is compared per
token in it, and only between passes of the same size (a pass over eight sequences costs far less per token than a
pass over one), so the choice follows the thread count, not how many requests happened to be running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PROBE_STEPS = 6  # forward passes a candidate count is timed over
EXPLORE_EVERY_S = 4.0
GIVE_UP_FACTOR = 2.0  # a probe pass this many times slower than the best's average ends the probe at once
SMOOTHING = 0.3  # weight of a new measurement in a count's running average
MAX_SIZE_BUCKET = 8  # passes of 8 tokens or more are compared as one size


@dataclass
class _Measure:
    seconds_per_token: float | None = None
    measured_at: float = 0.0

    def add(self, value: float, now: float) -> None:
        self.seconds_per_token = value if self.seconds_per_token is None else (1 - SMOOTHING) * self.seconds_per_token + SMOOTHING * value
        self.measured_at = now


@dataclass
class ThreadTuner:
    """Chooses among `candidates` thread counts. Call `threads_for_step()` before a forward pass and `record()` after."""

    candidates: tuple[int, ...]
    clock: Callable[[], float] = time.monotonic
    explore_every_s: float = EXPLORE_EVERY_S
    current: int = 0
    _measures: dict[tuple[int, int], _Measure] = field(default_factory=dict)
    _probing: int | None = None
    _probe_left: int = 0
    _probe_times: list[tuple[int, float]] = field(default_factory=list)
    _next_probe_at: float = 0.0

    def __post_init__(self) -> None:
        self.candidates = tuple(sorted(set(self.candidates)))
        self.current = self.current or self.candidates[-1]
        self._next_probe_at = self.clock() + self.explore_every_s

    @classmethod
    def fixed(cls, threads: int, *, clock: Callable[[], float] = time.monotonic) -> ThreadTuner:
        return cls(candidates=(threads,), current=threads, clock=clock)

    @classmethod
    def up_to(cls, cores: int, *, clock: Callable[[], float] = time.monotonic) -> ThreadTuner:
        """Between one thread and all `cores`, starting with all of them (an idle machine is the common case)."""
        return cls(candidates=tuple(sorted({1, max(1, cores // 2), cores})), current=cores, clock=clock)

    def threads_for_step(self) -> int:
        if self._probing is None and len(self.candidates) > 1 and self.clock() >= self._next_probe_at:
            self._probing = self._next_candidate()
            self._probe_left = PROBE_STEPS
            self._probe_times = []
        return self._probing if self._probing is not None else self.current

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """One forward pass with `threads` took `seconds` for `tokens` tokens."""
        if tokens <= 0:
            return
        per_token = seconds / tokens
        now = self.clock()
        size = min(tokens, MAX_SIZE_BUCKET)
        if self._probing is None or threads != self._probing:
            if threads == self.current:
                self._measure(threads, size).add(per_token, now)
            return
        best = self._measure(self.current, size).seconds_per_token
        self._probe_times.append((size, per_token))
        self._probe_left -= 1
        if best is not None and per_token > GIVE_UP_FACTOR * best:
            self._end_probe(now, keep=False)
        elif self._probe_left <= 0:
            self._end_probe(now, keep=self._probe_wins(threads, now))

    def _probe_wins(self, threads: int, now: float) -> bool:
        """Whether the probed count beat the current one on the pass sizes both were measured at."""
        wins = losses = 0
        for size, per_token in self._probe_times:
            self._measure(threads, size).add(per_token, now)
            best = self._measure(self.current, size).seconds_per_token
            if best is not None:
                wins, losses = (wins + 1, losses) if per_token < best else (wins, losses + 1)
        return wins > losses

    def _measure(self, threads: int, size: int) -> _Measure:
        return self._measures.setdefault((threads, size), _Measure())

    def _end_probe(self, now: float, *, keep: bool) -> None:
        if keep and self._probing is not None:
            self.current = self._probing
        self._probing = None
        self._next_probe_at = now + self.explore_every_s

    def _next_candidate(self) -> int:
        """The count measured longest ago (never measured first), other than the current one."""
        others = [count for count in self.candidates if count != self.current]

        def last_measured(count: int) -> float:
            times = [measure.measured_at for (threads, _), measure in self._measures.items() if threads == count]
            return max(times, default=-1.0)

        return min(others, key=last_measured)

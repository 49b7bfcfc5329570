"""Optional bearer-token auth: when `FABULA_API_KEY` is set, API routes need `Authorization: Bearer <key>`.

Wrong keys are counted per client address: after `max_failures` in a minute, that address is answered 429
(with `Retry-After`) until the oldest failure leaves the window, the right key included, so a key cannot be
guessed faster than a few tries a minute.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from fastapi import Request

from shared.errors import AuthenticationFailed, RateLimited

# Enough for a person who mistypes the key; far too few to guess a key.
MAX_KEY_FAILURES_PER_MINUTE = 5


class KeyFailures:
    """Wrong keys per client address in a sliding window (thread-safe: sync dependencies run in a pool)."""

    def __init__(self, max_failures: int, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise `RateLimited` while `address` has used up its failures in the window."""
        now = self.clock()
        with self._lock:
            failures = self._recent(address, now)
            if failures is None or len(failures) < self.max_failures:
                return
            retry_after = max(1, math.ceil(failures[0] + self.window_s - now))
        raise RateLimited(
            f"Too many wrong API keys from this address ({self.max_failures} in a minute). Try again in {retry_after} s.",
            retry_after=retry_after, param="Authorization",
        )

    def record(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            self._failures.setdefault(address, deque()).append(now)
            self._recent(address, now)
            if len(self._failures) > 10_000:
                for idle in [key for key, times in self._failures.items() if not times or times[-1] <= now - self.window_s]:
                    del self._failures[idle]

    def _recent(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures


def bearer_guard(
    api_key: str | None, *, max_failures: int = MAX_KEY_FAILURES_PER_MINUTE, failures: KeyFailures | None = None
) -> Callable[[Request], None]:
    """A FastAPI dependency that accepts every request when no key is configured."""
    failed = failures or KeyFailures(max_failures)

    def check(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("This server needs an API key: send `Authorization: Bearer <key>`.", param="Authorization")
        address = request.client.host if request.client else "unknown"
        failed.check(address)
        if not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            failed.record(address)
            raise AuthenticationFailed("The API key is not valid.", param="Authorization")

    return check

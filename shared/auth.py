"""Optional bearer-token auth: when `FABULA_API_KEY` is set, API routes need `Authorization: Bearer <key>`.

Wrong keys are counted per client address: after `max_failures` in a minute, a wrong key from that address
is answered 429 (with `Retry-After`) until the oldest failure leaves the window, so a key cannot be guessed
faster than a few tries a minute. The right key is never refused: one client guessing behind a shared proxy
address must not lock out everyone else behind it. Every place a key is tried (the API's bearer guard, the
studio's login) shares one counter; `RedisKeyFailures` keeps it in Redis so it holds across replicas.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from fastapi import Request

from shared.errors import AuthenticationFailed, RateLimited

logger = logging.getLogger(__name__)

# Enough for a person who mistypes the key; far too few to guess a key.
MAX_KEY_FAILURES_PER_MINUTE = 5


class KeyFailureCounter(Protocol):
    """Where wrong keys are counted: `check` raises `RateLimited` for a locked-out address, `record` counts one."""

    max_failures: int

    def check(self, address: str) -> None: ...

    def record(self, address: str) -> None: ...


def too_many_failures(max_failures: int, retry_after: int) -> RateLimited:
    return RateLimited(
        f"Too many wrong API keys from this address ({max_failures} in a minute). Try again in {retry_after} s.",
        retry_after=retry_after, param="Authorization",
    )


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
        raise too_many_failures(self.max_failures, retry_after)

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


class RedisKeyFailures:
    """The same window kept in Redis, shared by every replica; counted in this process while Redis is down
    (a guess is still throttled, per replica, and the right key still works)."""

    def __init__(self, url: str, max_failures: int = MAX_KEY_FAILURES_PER_MINUTE, *, window_s: float = 60.0) -> None:
        import redis

        self.max_failures = max_failures
        self.window_s = window_s
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._redis_error = redis.RedisError
        self._fallback = KeyFailures(max_failures, window_s=window_s)

    def check(self, address: str) -> None:
        name = self._name(address)
        now = time.time()
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zremrangebyscore(name, 0, now - self.window_s)
            pipe.zcard(name)
            pipe.zrange(name, 0, 0, withscores=True)
            _, count, oldest = pipe.execute()
        except self._redis_error as exc:
            self._note_outage(exc)
            self._fallback.check(address)
            return
        if count >= self.max_failures:
            retry_after = max(1, math.ceil(oldest[0][1] + self.window_s - now)) if oldest else 1
            raise too_many_failures(self.max_failures, retry_after)

    def record(self, address: str) -> None:
        name = self._name(address)
        now = time.time()
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zadd(name, {f"{now}:{secrets.token_hex(4)}": now})
            pipe.expire(name, int(self.window_s) + 1)
            pipe.execute()
        except self._redis_error as exc:
            self._note_outage(exc)
            self._fallback.record(address)

    @staticmethod
    def _name(address: str) -> str:
        return "fabula:key-failures:" + address

    @staticmethod
    def _note_outage(exc: Exception) -> None:
        logger.warning("wrong keys counted in this process: Redis does not answer", extra={"fields": {"error": repr(exc)[:200]}})


def client_address(request: Request) -> str:
    """The caller's address as the server saw it: the peer, or what a proxy named in FABULA_FORWARDED_ALLOW_IPS
    said in `X-Forwarded-For` (the server rewrites the peer only for those proxies)."""
    return request.client.host if request.client else "unknown"


def key_is_valid(token: str, api_key: str) -> bool:
    return secrets.compare_digest(token.strip().encode(), api_key.encode())


def check_key(token: str, api_key: str, address: str, failures: KeyFailureCounter) -> bool:
    """Whether `token` is the key; a wrong one is counted, and refused with 429 once `address` has used its tries."""
    if key_is_valid(token, api_key):
        return True
    failures.check(address)
    failures.record(address)
    return False


def bearer_guard(
    api_key: str | None, *, max_failures: int = MAX_KEY_FAILURES_PER_MINUTE, failures: KeyFailureCounter | None = None
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
        if not check_key(token, api_key, client_address(request), failed):
            raise AuthenticationFailed("The API key is not valid.", param="Authorization")

    return check

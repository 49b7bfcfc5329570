"""What the web app's routes and UI callbacks share: settings, the public URL, the rate limiter, the wrong-key
counter (one for the API and the studio's login) and the Workshop.

The Workshop is built inside the running server's event loop (in the lifespan), after the routes and the UI are
declared, so it arrives here late; anything that needs it before then gets a plain 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.auth import MAX_KEY_FAILURES_PER_MINUTE, KeyFailureCounter, KeyFailures, RedisKeyFailures
from shared.errors import ModelNotReady
from shared.settings import Settings
from webapp.api.rate_limit import RateLimiter, RedisRateLimiter
from webapp.workshop import Workshop


@dataclass
class WebState:
    settings: Settings
    public_url: str
    limiter: RateLimiter | RedisRateLimiter
    key_failures: KeyFailureCounter = field(default_factory=lambda: KeyFailures(MAX_KEY_FAILURES_PER_MINUTE))
    workshop: Workshop | None = field(default=None)
    address_warning: str | None = None  # why a phone cannot open the books' QR codes, when it cannot

    @classmethod
    def create(cls, settings: Settings, public_url: str, *, address_warning: str | None = None) -> WebState:
        return cls(
            settings=settings, public_url=public_url.rstrip("/"), limiter=rate_limiter(settings),
            key_failures=key_failure_counter(settings), address_warning=address_warning,
        )

    def require_workshop(self) -> Workshop:
        if self.workshop is None:
            raise ModelNotReady("Fabula is still starting; try again in a few seconds.")
        return self.workshop


def _redis_url(settings: Settings) -> str | None:
    url = settings.broker_url
    return url if url and url.startswith(("redis://", "rediss://")) else None


def rate_limiter(settings: Settings) -> RateLimiter | RedisRateLimiter:
    """In this process on one machine; in Redis (shared by every replica) when the broker is Redis."""
    url = _redis_url(settings)
    return RedisRateLimiter(url, settings.rate_limit_per_minute) if url else RateLimiter(settings.rate_limit_per_minute)


def key_failure_counter(settings: Settings) -> KeyFailureCounter:
    """Wrong keys, from the API and the studio's login alike: in Redis when the broker is Redis, else here."""
    url = _redis_url(settings)
    return RedisKeyFailures(url, MAX_KEY_FAILURES_PER_MINUTE) if url else KeyFailures(MAX_KEY_FAILURES_PER_MINUTE)

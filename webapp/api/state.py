"""What the web app's routes and UI callbacks share: settings, the public URL, the rate limiter and the Workshop.

The Workshop is built inside the running server's event loop (in the lifespan), after the routes and the UI are
declared, so it arrives here late; anything that needs it before then gets a plain 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import ModelNotReady
from shared.settings import Settings
from webapp.api.rate_limit import RateLimiter, RedisRateLimiter
from webapp.workshop import Workshop


@dataclass
class WebState:
    settings: Settings
    public_url: str
    limiter: RateLimiter | RedisRateLimiter
    workshop: Workshop | None = field(default=None)
    address_warning: str | None = None  # why a phone cannot open the books' QR codes, when it cannot

    @classmethod
    def create(cls, settings: Settings, public_url: str, *, address_warning: str | None = None) -> WebState:
        return cls(
            settings=settings, public_url=public_url.rstrip("/"), limiter=rate_limiter(settings), address_warning=address_warning,
        )

    def require_workshop(self) -> Workshop:
        if self.workshop is None:
            raise ModelNotReady("Fabula is still starting; try again in a few seconds.")
        return self.workshop


def rate_limiter(settings: Settings) -> RateLimiter | RedisRateLimiter:
    """In this process on one machine; in Redis (shared by every replica) when the broker is Redis."""
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(settings.broker_url, settings.rate_limit_per_minute)
    return RateLimiter(settings.rate_limit_per_minute)

"""FastAPI dependencies: the shared state, the Workshop, the caller's identity for rate limiting."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from webapp.api.state import WebState
from webapp.workshop import Workshop


def get_state(request: Request) -> WebState:
    return request.app.state.web


def get_workshop(request: Request) -> Workshop:
    return get_state(request).require_workshop()


def client_key(request: Request) -> str:
    """Who is asking, for the rate limit and the books' owner.

    With `FABULA_API_KEY` set, the key (hashed): the router's guard has already refused a wrong one. With no key
    set, a bearer value proves nothing, and counting it would let any caller look new with each request, so the
    client is its address.
    """
    if get_state(request).settings.api_key is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]
    return "ip:" + (request.client.host if request.client else "unknown")


def rate_limit(request: Request) -> None:
    get_state(request).limiter.check(client_key(request))


StateDep = Annotated[WebState, Depends(get_state)]
WorkshopDep = Annotated[Workshop, Depends(get_workshop)]
RateLimit = Depends(rate_limit)

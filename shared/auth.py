"""Optional bearer-token auth: when `FABULA_API_KEY` is set, API routes need `Authorization: Bearer <key>`."""

from __future__ import annotations

import secrets
from typing import Callable

from fastapi import Request

from shared.errors import AuthenticationFailed


def bearer_guard(api_key: str | None) -> Callable[[Request], None]:
    """A FastAPI dependency that accepts every request when no key is configured."""

    def check(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("This server needs an API key: send `Authorization: Bearer <key>`.", param="Authorization")
        if not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise AuthenticationFailed("The API key is not valid.", param="Authorization")

    return check

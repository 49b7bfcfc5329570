"""Assembling the routers: everything under /api/v1 behind the optional API key; /books stays open."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shared.auth import KeyFailureCounter, bearer_guard
from shared.settings import Settings
from webapp.api import books, edits, options, reports, sse, stories
from webapp.api.links import API_PREFIX

books_router = books.router


def api_router(settings: Settings, *, key_failures: KeyFailureCounter | None = None) -> APIRouter:
    """`key_failures` is the counter the studio's login shares, so a key guessed there is throttled here too."""
    guard = bearer_guard(settings.api_key.get_secret_value() if settings.api_key else None, failures=key_failures)
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(guard)])
    router.include_router(stories.router)
    router.include_router(sse.router)
    router.include_router(edits.router)
    router.include_router(options.router)
    router.include_router(reports.router)
    return router

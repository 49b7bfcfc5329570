"""The REST API under /api/v1 (stories, options) and the public book links under /books."""

from webapp.api.routes import api_router, books_router
from webapp.api.state import WebState

__all__ = ["WebState", "api_router", "books_router"]

"""How long a request may live: its deadline, and the moment its client leaves.

Starlette keeps running a route after its client has hung up; for a model service that means painting for
nobody while every book behind it waits. `cancel_on_disconnect` races the route's model work against the
connection and cancels the work when the client goes, which the micro-batcher turns into a dropped request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends
from starlette.requests import Request
from starlette.types import Receive

from shared.errors import ClientDisconnected, InvalidRequest
from shared.settings import Settings

T = TypeVar("T")

TIMEOUT_HEADER = "X-Request-Timeout"


def deadline_for(request: Request, settings: Settings) -> float:
    """The `time.monotonic()` instant by which this request's model work must start.

    A client may ask for less time with `X-Request-Timeout: <seconds>`; the most is FABULA_SERVICE_TIMEOUT_S,
    how long Fabula's own clients wait before they give up.
    """
    budget = settings.service_timeout_s
    header = request.headers.get(TIMEOUT_HEADER)
    if header is not None:
        try:
            asked = float(header)
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked) or asked <= 0:
            raise InvalidRequest(
                f"`{TIMEOUT_HEADER}` must be a number of seconds greater than 0, not {header!r}.", param=TIMEOUT_HEADER
            )
        budget = min(budget, asked)
    return time.monotonic() + budget


def request_deadline(request: Request) -> float:
    """A FastAPI dependency: the request's deadline, checked before its body is validated."""
    return deadline_for(request, request.app.state.settings)


DeadlineDep = Annotated[float, Depends(request_deadline)]


async def until_disconnected(receive: Receive) -> None:
    """Return once the client has closed the connection; only call it after the request body was read."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client leaves first (then raise `ClientDisconnected`)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnected(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ClientDisconnected("The client closed the connection before its answer was ready; the work was dropped.")
    return task.result()

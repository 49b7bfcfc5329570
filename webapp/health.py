"""Whether the web app's dependencies answer: the job database (`SELECT 1`) and, when books go through Celery,
the broker (a Redis `PING`). `/readyz` of the web app and of `fabula worker` both ask here, so a load balancer
stops sending traffic to a replica that could only answer 503.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, text

from shared.http_errors import BROKER, DATABASE
from shared.settings import Settings
from webapp.jobs.database import database_url, open_engine

logger = logging.getLogger(__name__)

# A probe answers within a few seconds even when a server drops packets instead of refusing the connection.
CHECK_TIMEOUT_S = 3.0
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dependency-check")


def database_is_up(settings: Settings, engine: Engine | None = None) -> bool:
    """`SELECT 1` on `engine` (the app's own pool), or on a short-lived engine for FABULA_DATABASE_URL."""
    own = engine is None
    checked = engine if engine is not None else open_engine(database_url(settings))
    try:
        with checked.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # noqa: BLE001 - any failure to answer means "down"; the reason goes to the log
        logger.warning("the job database does not answer", extra={"fields": {"error": repr(exc)[:300]}})
        return False
    finally:
        if own:
            checked.dispose()


def broker_is_up(settings: Settings) -> bool:
    """A Redis `PING` when FABULA_BROKER_URL is Redis; True when there is no broker to ask."""
    url = settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://")):
        return True
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S)
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        logger.warning("the broker does not answer", extra={"fields": {"error": repr(exc)[:300]}})
        return False
    finally:
        client.close()


def dependency_health(settings: Settings, *, engine: Engine | None = None, timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """The dependencies that are down, by name ("database", "broker"); empty when all answer within `timeout_s`."""
    checks = {DATABASE: _checks.submit(database_is_up, settings, engine), BROKER: _checks.submit(broker_is_up, settings)}
    down: list[str] = []
    for name, check in checks.items():
        try:
            if not check.result(timeout=timeout_s):
                down.append(name)
        except TimeoutError:
            down.append(name)
    return down


async def dependency_health_async(settings: Settings, *, engine: Engine | None = None, timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """`dependency_health` off the event loop, for a `/readyz` route."""
    return await asyncio.to_thread(dependency_health, settings, engine=engine, timeout_s=timeout_s)

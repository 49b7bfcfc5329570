"""Celery for books: the app both the web replicas (to send orders) and `fabula worker` (to run them) build.

At least once: a task is acknowledged only after it ran (`acks_late`), a task whose worker died is given to
another worker after the broker's visibility timeout (`task_reject_on_worker_lost`), and a worker takes one task at
a time per slot (`worker_prefetch_multiplier=1`), so a killed worker holds back nothing else.
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings
from webapp.jobs.broker_transport import TRANSPORT

RUN_ORDER = "fabula.run_order"
BOOKS_QUEUE = "books"


def celery_app(settings: Settings) -> Celery:
    app = Celery("fabula", broker=settings.broker_url, set_as_current=False)
    if (settings.broker_url or "").startswith(("redis://", "rediss://")):
        app.conf.broker_transport = TRANSPORT  # kombu's Redis transport with its reconnect fault closed
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=BOOKS_QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # Look for unacknowledged tasks of dead workers often enough that one comes back soon after its timeout.
            "unacked_restore_interval": max(1, min(10, int(settings.broker_visibility_timeout_s / 5))),
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app

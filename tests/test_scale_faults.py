"""The scale-out mode survives its own servers failing: real PostgreSQL and Redis, two `fabula serve web` replicas
and two `fabula worker`s started on one machine with their default ports. Redis is killed and restarted empty
mid-book, then PostgreSQL is stopped and restarted, then a worker is killed. Every accepted book ends done (a
failed one with a reason that `resume` finishes), none is left queued or running, no finished picture is painted
again, and during each outage the web app answers 503 with `Retry-After`, never 500, and its `/readyz` says what
is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.cluster import (
    FabulaProcess, Postgres, Redis, migrated, scratch_folder, servers_available, tiny_cluster_environment, web_replica, worker,
)
from shared.settings import Settings

pytestmark = [pytest.mark.scale, pytest.mark.skipif(not servers_available(), reason="needs the Debian packages postgresql and redis-server")]

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
LEASE_S = 6
VISIBILITY_S = 8


class Cluster:
    def __init__(self, environment: dict[str, str], folder: Path, postgres: Postgres, redis: Redis) -> None:
        self.environment, self.folder, self.postgres, self.redis = environment, folder, postgres, redis
        self.webs: list[FabulaProcess] = []
        self.workers: list[FabulaProcess] = []

    @property
    def pictures(self) -> Path:
        return Path(self.environment["FABULA_DATA_DIR"]) / "artifacts"

    def painted(self) -> dict[Path, int]:
        return {path: path.stat().st_mtime_ns for path in self.pictures.glob("*/*.png")}

    def unfinished(self) -> dict[str, str]:
        engine = create_engine(self.postgres.url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT id, status FROM jobs WHERE status IN ('queued', 'running')")).all()
        finally:
            engine.dispose()
        return {job_id: status for job_id, status in rows}

    def running_with_pictures(self) -> list[tuple[str, str]]:
        engine = create_engine(self.postgres.url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT id, lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL")).all()
        finally:
            engine.dispose()
        return [(job_id, owner) for job_id, owner in rows if any((self.pictures / job_id).glob("page-*.png"))]


@pytest.fixture(scope="module")
def cluster(tiny_stack: Settings) -> Iterator[Cluster]:
    folder = scratch_folder()
    postgres = Postgres(folder / "postgres").start()
    redis = Redis().start()
    environment = tiny_cluster_environment(tiny_stack, folder, postgres, redis, lease_s=LEASE_S, visibility_s=VISIBILITY_S)
    migrated(environment, folder)
    made = Cluster(environment, folder, postgres, redis)
    try:
        made.webs = [web_replica("web-a", environment, folder), web_replica("web-b", environment, folder)]
        made.workers = [worker("worker-1", environment, folder), worker("worker-2", environment, folder)]  # both on the default port
        yield made
    finally:
        for process in [*made.workers, *made.webs]:
            process.stop()
        redis.stop()
        postgres.stop()


def submit(web: FabulaProcess, pages: int = 4) -> httpx.Response:
    data = {"pages": str(pages), "seed": "3", "narrate": "false", "character_names": "Mia"}
    return httpx.post(f"{web.url}/api/v1/stories", files={"photo": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")}, data=data, timeout=60)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def assert_outage_is_503(web: FabulaProcess, down: str, story_id: str) -> None:
    """Every kind of request answers 503 with Retry-After in the error shape (or is served); never a 500."""
    answers = {
        "create": submit(web, pages=1),
        "read": httpx.get(f"{web.url}/api/v1/stories/{story_id}", timeout=30),
        "list options": httpx.get(f"{web.url}/api/v1/options", timeout=30),
    }
    for what, answer in answers.items():
        assert answer.status_code < 500 or answer.status_code == 503, f"{what}: {answer.status_code} {answer.text[:300]}"
        if answer.status_code == 503:
            assert answer.json()["error"]["type"] == "service_unavailable" and int(answer.headers["retry-after"]) > 0, (what, answer.text)
    assert answers["create"].status_code == 503, answers["create"].text
    ready = httpx.get(f"{web.url}/readyz", timeout=30)
    assert ready.status_code == 503 and down in ready.json()["down"], ready.text


def test_books_outlive_a_broker_restart_a_database_restart_and_a_lost_worker(cluster: Cluster) -> None:
    web_a, web_b = cluster.webs
    accepted = [submit(web) for web in (web_a, web_b, web_a)]
    assert all(answer.status_code == 202 for answer in accepted), [answer.text for answer in accepted]
    ids = [answer.json()["id"] for answer in accepted]
    wait_for(cluster.running_with_pictures, "a book with a picture")

    # 1. Redis is killed mid-book and comes back empty (no persistence): its queued orders are gone.
    finished = cluster.painted()
    assert cluster.redis.process is not None
    cluster.redis.process.kill()
    cluster.redis.process.wait(timeout=15)
    assert_outage_is_503(web_b, "broker", ids[0])
    cluster.redis.start()
    after_broker = [submit(web) for web in (web_a, web_b)]
    assert all(answer.status_code == 202 for answer in after_broker), [answer.text for answer in after_broker]
    ids += [answer.json()["id"] for answer in after_broker]
    wait_for(cluster.running_with_pictures, "a book being made after the broker came back")

    # 2. PostgreSQL stops mid-book and comes back.
    finished |= cluster.painted()
    cluster.postgres.stop()
    assert_outage_is_503(web_a, "database", ids[-1])
    cluster.postgres.run()
    after_database = submit(web_b)
    assert after_database.status_code == 202, after_database.text
    ids.append(after_database.json()["id"])

    # 3. A worker is killed mid-book (SIGKILL: its order stays unacknowledged) and another takes its place.
    job_id, owner = wait_for(lambda: next(iter(cluster.running_with_pictures()), None), "a book being made after the database came back")  # type: ignore[misc]
    pid = int(owner.split("-")[-2])
    victim = next(process for process in cluster.workers if process.process.pid == pid)
    finished |= cluster.painted()
    victim.kill()
    cluster.workers.remove(victim)
    cluster.workers.append(worker("worker-3", cluster.environment, cluster.folder))

    # Every book ends: done, or failed with a reason `resume` finishes. None stays queued or running.
    wait_for(lambda: not cluster.unfinished(), f"every book to end (still: {cluster.unfinished()})", timeout=300)
    for story_id in ids:
        story = httpx.get(f"{web_b.url}/api/v1/stories/{story_id}", timeout=30).json()
        if story["status"] == "failed":
            resumed = httpx.post(f"{web_a.url}/api/v1/stories/{story_id}/resume", timeout=30)
            assert resumed.status_code == 202, resumed.text
    wait_for(lambda: not cluster.unfinished(), "the resumed books", timeout=300)
    for story_id in ids:
        story = httpx.get(f"{web_a.url}/api/v1/stories/{story_id}", timeout=30).json()
        assert story["status"] == "done", story
        assert len(list((cluster.pictures / story_id).glob("page-*.png"))) == 4
    repainted = [f"{path.parent.name}/{path.name}" for path, mtime in finished.items() if path.stat().st_mtime_ns != mtime]
    assert repainted == [], "finished pictures were painted again"

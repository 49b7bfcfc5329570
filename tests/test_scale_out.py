"""The scale-out mode on real servers: PostgreSQL for the jobs, Redis as the broker, two `fabula serve web`
replicas and two `fabula worker`s as separate processes, all on loopback, with the tiny model services shared.

A story made through one replica is followed to its end on the other; a worker killed with SIGKILL mid-book
loses no book and no finished picture is painted again; the queue cap holds across replicas."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
CAP = 6
LEASE_S = 6
VISIBILITY_S = 8


class Cluster:
    def __init__(self, environment: dict[str, str], folder: Path, postgres: Postgres) -> None:
        self.environment = environment
        self.folder = folder
        self.postgres = postgres
        self.webs: list[FabulaProcess] = []
        self.workers: list[FabulaProcess] = []

    def add_worker(self, name: str) -> FabulaProcess:
        started = worker(name, self.environment, self.folder)
        self.workers.append(started)
        return started

    def database(self):  # type: ignore[no-untyped-def]
        return create_engine(self.postgres.url)

    def stop(self) -> None:
        for process in [*self.workers, *self.webs]:
            process.stop()


@pytest.fixture(scope="module")
def cluster(tiny_stack: Settings) -> Iterator[Cluster]:
    folder = scratch_folder()
    postgres = Postgres(folder / "postgres").start()
    redis = Redis().start()
    environment = tiny_cluster_environment(
        tiny_stack, folder, postgres, redis, lease_s=LEASE_S, visibility_s=VISIBILITY_S, FABULA_MAX_QUEUED_JOBS=str(CAP)
    )
    migrated(environment, folder)
    made = Cluster(environment, folder, postgres)
    try:
        made.webs = [web_replica("web-a", environment, folder), web_replica("web-b", environment, folder)]
        made.add_worker("worker-1")
        made.add_worker("worker-2")
        yield made
    finally:
        made.stop()
        redis.stop()
        postgres.stop()


def submit(web: FabulaProcess, pages: int = 2, **fields: str) -> httpx.Response:
    data = {"pages": str(pages), "seed": "3", "narrate": "false", "character_names": "Mia", **fields}
    return httpx.post(f"{web.url}/api/v1/stories", files={"photo": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")}, data=data, timeout=60)


def follow(web: FabulaProcess, story_id: str, timeout: float = 300) -> list[dict]:
    events = []
    with httpx.stream("GET", f"{web.url}/api/v1/stories/{story_id}/events", timeout=timeout) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def wait_until_idle(cluster: Cluster, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with cluster.database().connect() as connection:
        while connection.execute(text("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")).scalar_one():
            assert time.monotonic() < deadline, "books did not finish"
            time.sleep(0.5)
            connection.commit()


def test_a_story_made_through_one_replica_is_followed_to_its_end_on_the_other(cluster: Cluster) -> None:
    web_a, web_b = cluster.webs
    accepted = submit(web_a)
    assert accepted.status_code == 202, accepted.text
    story_id = accepted.json()["id"]
    events = follow(web_b, story_id)
    assert events[-1]["status"] == "done" and events[-1]["pages_done"] == 2
    assert any(event["stage"] == "illustrate" for event in events), "the other replica saw the progress, not only the end"
    for web in cluster.webs:
        story = httpx.get(f"{web.url}/api/v1/stories/{story_id}", timeout=30).json()
        assert story["status"] == "done"
        book = httpx.get(f"{web.url}/books/{story['book_url'].rsplit('/', 1)[1]}", timeout=30)
        assert book.status_code == 200 and book.content.startswith(b"%PDF")


def test_a_worker_killed_mid_book_loses_no_book_and_paints_no_finished_picture_again(cluster: Cluster) -> None:
    web_a, web_b = cluster.webs
    ids = [submit(web, pages=4).json()["id"] for web in (web_a, web_b, web_a)]
    pictures = Path(cluster.environment["FABULA_DATA_DIR"]) / "artifacts"
    victim_pid = victim_job = None
    deadline = time.monotonic() + 180
    with cluster.database().connect() as connection:
        while victim_pid is None:
            assert time.monotonic() < deadline, "no worker took a book"
            rows = connection.execute(text("SELECT id, lease_owner FROM jobs WHERE lease_owner IS NOT NULL AND status = 'running'")).all()
            connection.commit()
            for job_id, owner in rows:
                if any((pictures / job_id).glob("page-*.png")):
                    victim_pid, victim_job = int(re.match(r"worker-.+-(\d+)-\w+$", owner).group(1)), job_id  # type: ignore[union-attr]
                    break
            time.sleep(0.2)
    victim = next(process for process in cluster.workers if process.process.pid == victim_pid)
    victim.kill()  # SIGKILL: no warm shutdown, its tasks stay unacknowledged
    painted = {path: path.stat().st_mtime_ns for path in pictures.glob("*/*.png")}
    cluster.workers.remove(victim)
    cluster.add_worker("worker-3")

    assert victim_job in ids
    for story_id in ids:
        events = follow(web_b, story_id)
        assert events[-1]["status"] == "done", events[-1]  # the killed worker's book too: its task came back
    for path, mtime in painted.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} of {path.parent.name} was painted again"
    for story_id in ids:
        assert len(list((pictures / story_id).glob("page-*.png"))) == 4


def test_the_queue_cap_holds_across_replicas(cluster: Cluster) -> None:
    wait_until_idle(cluster)
    webs = cluster.webs
    with ThreadPoolExecutor(max_workers=14) as pool:
        answers = list(pool.map(lambda index: submit(webs[index % 2], pages=1), range(14)))
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(202) <= CAP and statuses.count(202) + statuses.count(429) == 14, statuses
    assert statuses.count(202) >= 1
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json()["error"]["type"] == "rate_limit_exceeded" and int(answer.headers["retry-after"]) > 0
    wait_until_idle(cluster)


def test_the_rate_limit_is_shared_by_replicas(cluster: Cluster) -> None:
    from shared.errors import RateLimited
    from webapp.api.rate_limit import RedisRateLimiter

    replicas = [RedisRateLimiter(cluster.environment["FABULA_BROKER_URL"], 5) for _ in range(2)]
    allowed = 0
    for index in range(8):
        try:
            replicas[index % 2].check("ip:203.0.113.9")
            allowed += 1
        except RateLimited as limited:
            assert limited.retry_after >= 1
    assert allowed == 5

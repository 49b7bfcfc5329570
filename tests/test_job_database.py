"""The job database and the disk under real faults: a damaged database file is named in plain words at start and
by `fabula doctor`; a full disk answers 507 and fails every book it stops with that reason (none left queued or
running); the queue cap holds against simultaneous submissions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shared.server_thread import ServerThread, free_port
from shared.settings import Settings
from webapp.app import create_web_app

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"


def submit(url: str, **fields: str) -> httpx.Response:
    data = {"pages": "1", "seed": "1", "narrate": "false", **fields}
    return httpx.post(f"{url}/api/v1/stories", files={"photo": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")}, data=data, timeout=120)


def test_a_damaged_job_database_is_named_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "jobs.sqlite3").write_bytes(b"this is not a database " * 500)
    environment = {**os.environ, "FABULA_DATA_DIR": str(tmp_path), "FABULA_PROFILE": "tiny"}
    served = subprocess.run([sys.executable, "-m", "webapp.cli", "serve", "web", "--port", str(free_port())], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert served.returncode != 0
    assert "jobs.sqlite3" in served.stderr and "damaged" in served.stderr and "Traceback" not in served.stderr
    doctor = subprocess.run([sys.executable, "-m", "webapp.cli", "doctor"], env=environment, capture_output=True, text=True, timeout=120)
    assert "Job database: PROBLEM" in doctor.stdout and "mv " in doctor.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MB filesystem (tmpfs) for the data folder; needs root, as CI has."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("mounting a small filesystem needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_507_and_no_book_is_left_stuck(tiny_settings: Settings, small_disk: Path) -> None:
    port = free_port()
    settings = tiny_settings.model_copy(update={"data_dir": small_disk, "max_queued_jobs": 50, "rate_limit_per_minute": 1000})
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    try:
        # The disk is nearly full already (other files on it), as disks are when they fill up.
        free = shutil.disk_usage(small_disk).free
        (small_disk / "other-files").write_bytes(b"\0" * max(0, free - 400_000))
        answers = [submit(server.url) for _ in range(30)]
        statuses = [answer.status_code for answer in answers]
        assert 507 in statuses, statuses
        full = next(answer for answer in answers if answer.status_code == 507).json()["error"]
        assert full["type"] == "insufficient_storage" and "full" in full["message"]
        store = server.server.config.app.state.web.workshop.store
        accepted = [answer.json()["id"] for answer in answers if answer.status_code == 202]
        deadline = time.monotonic() + 300
        while any(store.get(job_id).status.value in ("queued", "running") for job_id in accepted):
            left = [(store.get(job_id).status.value, store.get(job_id).stage.value) for job_id in accepted]
            assert time.monotonic() < deadline, f"a book was left queued or running: {left}"
            time.sleep(0.5)
        failed = [store.get(job_id) for job_id in accepted if store.get(job_id).status.value == "failed"]
        assert failed, "the disk filled up without stopping any accepted book"
        assert all(record.error_type == "insufficient_storage" and "full" in (record.error or "") for record in failed)
    finally:
        server.stop()


def test_the_queue_cap_holds_against_simultaneous_submissions(tiny_settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path, "max_queued_jobs": 16, "rate_limit_per_minute": 1000})
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = [answer.status_code for answer in pool.map(lambda _: submit(server.url), range(30))]
        assert statuses.count(202) <= 16 and statuses.count(202) + statuses.count(429) == 30, statuses
    finally:
        server.stop()


def test_two_changes_at_once_take_the_book_once(tiny_settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    settings = tiny_settings.model_copy(update={"data_dir": tmp_path, "rate_limit_per_minute": 1000})
    server = ServerThread(create_web_app(settings, port=port, start_services=True), port=port).start(timeout=600)
    try:
        story = submit(server.url).json()
        store = server.server.config.app.state.web.workshop.store
        deadline = time.monotonic() + 300
        while store.get(story["id"]).status.value != "done":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        url = f"{server.url}/api/v1/stories/{story['id']}/pages/1/regenerate"
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: httpx.post(url, json={"what": "image"}, timeout=60), range(6)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses.count(202) == 1 and statuses.count(409) == 5, statuses
        while store.get(story["id"]).status.value != "done":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert (tmp_path / "artifacts" / story["id"] / "page-01.png").is_file()  # the repaint was not lost
    finally:
        server.stop()

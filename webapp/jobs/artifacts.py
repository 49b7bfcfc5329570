"""The artifact folder: one directory per job holding the photo, the pictures and the book. Writes are atomic."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from shared.errors import NotFound, StorageFull
from webapp.jobs.disk_guard import DiskGuard, is_disk_full

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


class ArtifactStore:
    def __init__(self, root: Path, *, guard: DiskGuard | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.guard = guard

    def job_dir(self, job_id: str) -> Path:
        if not _NAME.match(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / job_id

    def path(self, job_id: str, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"bad artifact name {name!r}")
        return self.job_dir(job_id) / name

    def write(self, job_id: str, name: str, data: bytes, *, new_job: bool = False) -> Path:
        """Write atomically (a reader sees the old file or the new one); a full disk raises `StorageFull`. Only a
        new job's first file makes its folder: a job deleted while it was being made gets no files again."""
        target = self.path(job_id, name)
        if self.guard is not None:
            self.guard.check()
        if not new_job and not target.parent.is_dir():
            raise NotFound(f"The story {job_id} was deleted.", param="id")
        temporary: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            if is_disk_full(exc):
                if self.guard is not None:
                    self.guard.filled()
                raise StorageFull.for_folder(str(self.root)) from None
            raise
        return target

    def read(self, job_id: str, name: str) -> bytes:
        return self.path(job_id, name).read_bytes()

    def exists(self, job_id: str, name: str) -> bool:
        return self.path(job_id, name).is_file()

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def copy(self, source_job: str, target_job: str, name: str) -> None:
        self.write(target_job, name, self.read(source_job, name), new_job=True)

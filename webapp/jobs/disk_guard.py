"""Keeping a full disk from leaving books stuck: a small reserve file, and a "full" state every writer of this
process shares (another process on the same volume notices on its own first write that meets the full disk).

When the disk under FABULA_DATA_DIR fills up, the job database itself could not record that a book failed, so
books would stay "running" for good. Fabula keeps a reserve file there; the first write that meets a full disk
deletes it, and from then on new work (new books, new steps, new files) is refused with `StorageFull` (507) while
the records that say a book failed still fit. Once the disk has room again (checked every few seconds), the
reserve is made again and work goes on.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from pathlib import Path

from shared.errors import StorageFull

logger = logging.getLogger(__name__)

RESERVE_NAME = ".fabula-disk-reserve"
RESERVE_BYTES = 4 * 1024 * 1024
RECHECK_S = 5.0


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    message = str(getattr(exc, "orig", None) or exc).lower()
    return "disk is full" in message or "no space left" in message


class DiskGuard:
    def __init__(self, folder: Path, *, reserve_bytes: int = RESERVE_BYTES) -> None:
        self.folder = folder
        self.reserve = folder / RESERVE_NAME
        self.reserve_bytes = reserve_bytes
        self.full = False
        self._checked = 0.0
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self._make_reserve()

    def check(self) -> None:
        """Raise `StorageFull` while the disk is full (new work must not start)."""
        if not self.full:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= RECHECK_S:
                self._checked = now
                if shutil.disk_usage(self.folder).free > 3 * self.reserve_bytes and self._make_reserve():
                    self.full = False
                    logger.info("the data disk has room again; new books are taken")
                    return
        raise StorageFull.for_folder(str(self.folder))

    def filled(self) -> None:
        """A write met a full disk: free the reserve (so failures can still be recorded) and refuse new work."""
        with self._lock:
            if not self.full:
                logger.error("the data disk is full; new books are refused until there is room", extra={"fields": {"folder": str(self.folder)}})
            self.full = True
            self._checked = time.monotonic()
            self.reserve.unlink(missing_ok=True)

    def _make_reserve(self) -> bool:
        if self.reserve.is_file() and self.reserve.stat().st_size >= self.reserve_bytes:
            return True
        try:
            with self.reserve.open("wb") as stream:
                stream.write(b"\0" * self.reserve_bytes)
            return True
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            return False

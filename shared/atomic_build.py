"""Build a folder once, atomically: used for the tiny models every service builds on first use.

The build happens in a temporary sibling folder that is renamed into place, so two processes (or threads)
starting at once never see, or leave, a half-written model: the loser of the race discards its copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from collections.abc import Callable

logger = logging.getLogger(__name__)
_BUILD_LOCK = threading.Lock()


def build_once(folder: Path, *, marker: str | Path, write: Callable[[Path], None], what: str) -> Path:
    """Run `write(staging)` and move the result to `folder`, unless `folder/marker` already exists."""
    folder = Path(folder)
    if (folder / marker).is_file():
        return folder
    with _BUILD_LOCK:
        if (folder / marker).is_file():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            write(staging)
            staging.chmod(0o755)  # mkdtemp makes it private; the model cache is shared like any other
            try:
                os.rename(staging, folder)
            except OSError:
                if not (folder / marker).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("built %s", what, extra={"fields": {"folder": str(folder)}})
    return folder

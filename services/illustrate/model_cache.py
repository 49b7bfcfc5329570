"""Find a published model's files in the local Hugging Face cache, never on the network.

The likeness adapter and the safety classifier are not pipelines, so `shared.profiles.resolve_model_path` (which
recognises a snapshot by its `config.json` or `model_index.json`) cannot tell a usable copy from a partial one;
here the caller names the files it will read, and a snapshot counts only when every one of them is there.
"""

from __future__ import annotations

import os
from pathlib import Path


def cached_snapshot(model_id: str, files: list[str]) -> Path | None:
    """The folder holding `files` for `model_id` (a local folder, or a hub id already downloaded), or None."""
    candidate = Path(os.path.expanduser(model_id))
    if candidate.is_dir():
        return candidate if all((candidate / name).is_file() for name in files) else None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    roots: set[Path] = set()
    for name in files:
        try:
            found = try_to_load_from_cache(model_id, name)
        except HFValidationError:  # neither a folder here nor a valid hub id
            return None
        if not isinstance(found, str):
            return None
        roots.add(Path(found).parents[len(Path(name).parts) - 1])
    return roots.pop() if len(roots) == 1 else None

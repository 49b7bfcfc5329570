"""What a pull will download, asked of the hub before any weight moves: each model's files and their sizes.

`fabula models pull` (and `fabula up` on its first run, which runs that command) says how many gigabytes it is
about to fetch before it fetches them. The sizes come from the hub's file listing (`model_info` with file
metadata); only the small marker file a snapshot is recognised by (`config.json` or `model_index.json`) is
downloaded here, because a diffusers repository's file choice depends on its `model_index.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from gpu_setup.hub_errors import ModelPullFailed
from gpu_setup.hub_files import MODEL_INDEX, SHARED_WITH_BASE, is_diffusers_repository, select_files
from gpu_setup.picture_weights import PictureWeights
from gpu_setup.picture_weights import present as present_picture_weights
from services.llm.gguf import gguf_file_for
from shared.errors import ModelUnavailable
from shared.profiles import SETTING_FOR_ROLE
from shared.settings import Profile

GB = 1e9
DISK_MARGIN_BYTES = 1 << 30

Kind = Literal["snapshot", "gguf", "picture"]


class PlannedModel(BaseModel):
    """One model to fetch: `repository` on the hub, the `files` Fabula loads from it, and how many bytes are not
    here yet. `revision` pins a snapshot to the commit its marker file came from."""

    role: str
    model_id: str
    kind: Kind
    repository: str
    files: list[str]
    size_bytes: int
    missing_bytes: int
    missing_files: int
    revision: str | None = None
    present_at: str | None = None


class DownloadPlan(BaseModel):
    models: list[PlannedModel]

    @property
    def missing_bytes(self) -> int:
        return sum(model.missing_bytes for model in self.models)

    @property
    def missing_files(self) -> int:
        return sum(model.missing_files for model in self.models)

    def summary(self, profile: Profile, endpoint: str, cache: str) -> str:
        """One line for the terminal, before the download starts."""
        if not self.missing_files:
            return f"The {profile.value} profile's weights are all here already ({len(self.models)} models)."
        models = sum(1 for model in self.models if model.missing_files)
        return (
            f"The {profile.value} profile downloads {gigabytes(self.missing_bytes)} ({self.missing_files} files of {models} "
            f"model{'s' if models > 1 else ''}) from {endpoint} into {cache}."
        )


def gigabytes(size_bytes: int) -> str:
    return f"{size_bytes / GB:.2f} GB"


def weights_variant(profile: Profile) -> str | None:
    """The diffusers weight variant a profile loads: fp16 files on the gpu profile, the default ones elsewhere."""
    return "fp16" if profile == Profile.gpu else None


def plan_snapshot(role: str, model_id: str, profile: Profile, *, endpoint: str, timeout_s: float) -> PlannedModel:
    """The files of a transformers or diffusers repository that `from_pretrained` reads, and their sizes."""
    from huggingface_hub import hf_hub_download

    sizes, listed_commit = _listing(model_id, endpoint=endpoint, timeout_s=timeout_s)
    # What is here is looked at before the marker file below is fetched, so the plan counts it too.
    here = {name for name in sizes if listed_commit and (storage_folder(model_id) / "snapshots" / listed_commit / name).exists()}
    if is_diffusers_repository(sizes):
        # Fetching one file by branch records refs/main, which is how the offline lookup finds the snapshot.
        marker = MODEL_INDEX
        marker_path = Path(hf_hub_download(model_id, marker, endpoint=endpoint, etag_timeout=timeout_s))
        files = select_files(
            sizes, model_index=json.loads(marker_path.read_text(encoding="utf-8")), variant=weights_variant(profile),
            skip_components=SHARED_WITH_BASE if role == "refiner" else (),
        )
        _require_weights(role, model_id, files)
    else:
        files = select_files(sizes)
        _require_weights(role, model_id, files)
        marker = "config.json" if "config.json" in files else files[0]
        marker_path = Path(hf_hub_download(model_id, marker, endpoint=endpoint, etag_timeout=timeout_s))
    commit = _commit_of(marker_path, marker)
    if commit != listed_commit:  # a hub that lists no commit, or a new commit between the two calls
        here = {name for name in files if (storage_folder(model_id) / "snapshots" / commit / name).exists()} - {marker}
    missing = [name for name in files if name not in here]
    missing_bytes = sum(sizes.get(name, 0) for name in missing)
    check_disk(role, model_id, missing_bytes, storage_folder(model_id))
    return PlannedModel(
        role=role, model_id=model_id, kind="snapshot", repository=model_id, files=files,
        size_bytes=sum(sizes.get(name, 0) for name in files), missing_bytes=missing_bytes, missing_files=len(missing), revision=commit,
    )


def plan_gguf(role: str, model_id: str, hub_file: tuple[str, str], *, endpoint: str, timeout_s: float) -> PlannedModel:
    """One GGUF file from a hub repository (`owner/repo/file.gguf`)."""
    repository, file_name = hub_file
    sizes, _ = _listing(repository, endpoint=endpoint, timeout_s=timeout_s)
    if file_name not in sizes:
        raise ModelPullFailed(
            f"The repository {repository} has no file {file_name}; set {SETTING_FOR_ROLE[role]} to `owner/repo/file.gguf` "
            "of a file it holds, or to a local .gguf file.", reason="not_found", param=SETTING_FOR_ROLE[role],
        )
    found = gguf_present(model_id)
    size = sizes[file_name]
    if found is None:
        check_disk(role, model_id, size, storage_folder(repository))
    return PlannedModel(
        role=role, model_id=model_id, kind="gguf", repository=repository, files=[file_name], size_bytes=size,
        missing_bytes=0 if found else size, missing_files=0 if found else 1, present_at=str(found) if found else None,
    )


def plan_picture(weights: PictureWeights, *, endpoint: str, timeout_s: float) -> PlannedModel:
    """The likeness adapter, the safety classifier or the upscaler: the hub is asked only when they are not here."""
    found = present_picture_weights(weights)
    sizes = {} if found else _listing(weights.model_id, endpoint=endpoint, timeout_s=timeout_s)[0]
    size = sum(sizes.get(name, 0) for name in weights.files)
    return PlannedModel(
        role=weights.role, model_id=weights.model_id, kind="picture", repository=weights.model_id, files=list(weights.files),
        size_bytes=size, missing_bytes=0 if found else size, missing_files=0 if found else len(weights.files), present_at=found,
    )


def gguf_present(model_id: str) -> Path | None:
    try:
        return gguf_file_for(model_id)
    except ModelUnavailable:
        return None


def hub_cache() -> Path:
    """The hub client's cache folder (`$HF_HOME/hub` unless HF_HUB_CACHE says otherwise)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser().resolve()


def storage_folder(model_id: str) -> Path:
    """Where the client keeps a repository in the cache: `<HF_HUB_CACHE>/models--org--name`."""
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache() / repo_folder_name(repo_id=model_id, repo_type="model")


def check_disk(role: str, model_id: str, needed: int, cache: Path) -> None:
    check_space(f"the {role} model '{model_id}'", needed, cache)


def check_space(what: str, needed: int, cache: Path) -> None:
    """Refuse a download of `needed` bytes into `cache` that would leave less than the margin free."""
    existing = next(parent for parent in [cache, *cache.parents] if parent.exists())
    free = shutil.disk_usage(existing).free
    if needed and needed + DISK_MARGIN_BYTES > free:
        raise ModelPullFailed(
            f"Not enough disk space for {what}: it needs {needed / GB:.1f} GB (plus 1 GB to spare) "
            f"in {cache}, and {free / GB:.1f} GB are free. Free some space or set HF_HOME to a folder on a bigger disk.",
            reason="disk", param="HF_HOME",
        )


def _listing(repository: str, *, endpoint: str, timeout_s: float) -> tuple[dict[str, int], str | None]:
    """Every file of the repository with its size in bytes, from the hub's listing, and the commit it lists."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(repository, timeout=timeout_s, files_metadata=True)
    return {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}, info.sha


def _require_weights(role: str, model_id: str, files: list[str]) -> None:
    if not any(name.endswith((".safetensors", ".bin")) for name in files):
        raise ModelPullFailed(
            f"The {role} model '{model_id}' has no weights Fabula can load (safetensors in the transformers or diffusers "
            f"layout). Set {SETTING_FOR_ROLE[role]} to a repository in that layout, or to a local folder.",
            reason="not_found", param=SETTING_FOR_ROLE[role],
        )


def _commit_of(path: Path, name: str) -> str:
    """The snapshot folder of a file that may sit in a subfolder of the snapshot."""
    depth = len(Path(name).parts)
    return path.parents[depth - 1].name

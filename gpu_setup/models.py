"""`fabula models pull` and `fabula models status`: real weights into the Hugging Face cache, and what is here.

Pulling is the one step that reaches a model hub. It downloads only what `from_pretrained` reads (see
`hub_files.py`) into the standard cache (HF_HOME), where `shared.profiles.resolve_model_path` finds it
later with the network switched off. A hub that cannot be reached fails in seconds with one message that
says what to do; nothing retries for minutes.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from gpu_setup.hub_errors import ModelPullFailed, explain, known_failures, offline_error, offline_variable
from gpu_setup.hub_files import MODEL_INDEX, SHARED_WITH_BASE, is_diffusers_repository, select_files
from gpu_setup.picture_weights import PictureWeights, picture_weights
from gpu_setup.picture_weights import present as present_picture_weights
from gpu_setup.picture_weights import pull as pull_picture_weights
from services.illustrate.tiny import REFINER_FOLDER
from services.llm.gguf import gguf_file_for, hub_gguf, is_gguf_model_id
from shared.errors import InvalidRequest, ModelUnavailable
from shared.profiles import RESTYLE, SETTING_FOR_ROLE, TINY, model_id_for, resolve_model_path, tiny_dir
from shared.settings import Profile, Settings

logger = logging.getLogger(__name__)

ROLES = ("caption", "illustrate", "refiner", "llm")
DEFAULT_HUB_TIMEOUT_S = 10.0
DISK_MARGIN_BYTES = 1 << 30
GB = 1e9

Action = Literal["downloaded", "up_to_date", "local_folder", "built_locally", "external", "not_used"]
State = Literal["present", "missing", "built_on_first_use", "external", "not_used"]


class PulledModel(BaseModel):
    role: str
    model_id: str | None
    action: Action
    path: str | None = None
    revision: str | None = None
    files: int = 0
    size_bytes: int = 0
    downloaded_bytes: int = 0


class ModelStatus(BaseModel):
    role: str
    model_id: str | None
    state: State
    path: str | None = None
    size_bytes: int | None = None
    detail: str

    @property
    def present(self) -> bool:
        return self.state == "present"

    def describe(self) -> str:
        size = ""
        if self.size_bytes:
            # Tiny models weigh a few megabytes; "0.0 GB" would read as empty.
            size = f", {self.size_bytes / GB:.1f} GB" if self.size_bytes >= GB / 10 else f", {self.size_bytes / 1e6:.1f} MB"
        return f"{self.role:<10} {self.model_id or '-'}: {self.detail}{size}"


def weights_variant(profile: Profile) -> str | None:
    """The diffusers weight variant a profile loads: fp16 files on the gpu profile, the default ones elsewhere."""
    return "fp16" if profile == Profile.gpu else None


def hub_timeout_s() -> float:
    """Seconds to wait for the hub to connect and answer; HF_HUB_ETAG_TIMEOUT overrides the default."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or DEFAULT_HUB_TIMEOUT_S)
    except ValueError:
        return DEFAULT_HUB_TIMEOUT_S


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def pull_models(
    profile: Profile,
    settings: Settings,
    *,
    roles: list[str] | None = None,
    progress: Callable[[str], object] = print,
) -> list[PulledModel]:
    """Download the weights `profile` needs (every role, or `roles`) and return what happened to each.

    Raises `ModelPullFailed` (a `ModelUnavailable`) with a message for the person at the terminal when
    downloads are switched off, the hub cannot be reached, a licence is not accepted or the disk is full.
    """
    settings = settings.model_copy(update={"profile": profile})
    unknown = sorted(set(roles or ()) - set(ROLES))
    if unknown:
        raise InvalidRequest(f"Unknown role(s) {', '.join(unknown)}: the roles are {', '.join(ROLES)}.", param="roles")
    results: list[PulledModel] = []
    to_download: list[tuple[str, str]] = []
    for role in roles or ROLES:
        model_id = model_id_for(role, settings)
        if role == "llm" and settings.llm_base_url:
            results.append(PulledModel(role=role, model_id=model_id, action="external"))
            progress(f"llm: served at {settings.llm_base_url} (FABULA_LLM_BASE_URL): nothing to download here.")
        elif model_id is None or model_id == RESTYLE:
            results.append(PulledModel(role=role, model_id=model_id, action="not_used"))
        elif model_id == TINY:
            results.append(PulledModel(role=role, model_id=TINY, action="built_locally", path=str(tiny_folder(role, settings))))
        elif role == "llm" and is_gguf_model_id(model_id) and hub_gguf(model_id) is None:
            results.append(PulledModel(role=role, model_id=model_id, action="local_folder", path=str(gguf_file_for(model_id))))
            progress(f"{role}: {model_id} is a GGUF file on this machine: nothing to download.")
        elif _is_local_path(model_id):
            results.append(PulledModel(role=role, model_id=model_id, action="local_folder", path=_local_folder(role, model_id)))
            progress(f"{role}: {model_id} is a local folder: nothing to download.")
        else:
            to_download.append((role, model_id))
    extras = [] if roles else picture_weights(settings)
    if not to_download and not extras:
        if all(result.action in ("built_locally", "not_used") for result in results):
            progress(f"The {profile.value} profile needs no download: its models are built locally on first use.")
        return results
    return results + _download(to_download, extras, settings, progress=progress)


def _download(
    models: list[tuple[str, str]], extras: list[PictureWeights], settings: Settings, *, progress: Callable[[str], object],
) -> list[PulledModel]:
    """Each (role, model id) in `models` and each of the picture weights in `extras`, from the hub."""
    variable = offline_variable()
    if variable is not None:
        raise offline_error(variable, settings.profile.value)
    results: list[PulledModel] = []
    for role, model_id in models:
        hub_file = hub_gguf(model_id) if role == "llm" else None
        pulled = _pull_gguf(role, model_id, hub_file, settings, progress=progress) if hub_file else _pull_one(role, model_id, settings, progress=progress)
        results.append(pulled)
    for weights in extras:
        folder, downloaded = pull_picture_weights(weights, settings, endpoint=hub_endpoint(), timeout_s=hub_timeout_s(), progress=progress)
        action: Action = "downloaded" if downloaded else "up_to_date"
        results.append(PulledModel(role=weights.role, model_id=weights.model_id, action=action, path=folder, files=len(weights.files)))
    return results


def model_status(settings: Settings) -> list[ModelStatus]:
    """For each role, the model id and whether its weights are on this machine (never touches the network)."""
    statuses = [_status_of(role, settings) for role in ROLES]
    for weights in picture_weights(settings):
        folder = present_picture_weights(weights)
        statuses.append(
            ModelStatus(role=weights.role, model_id=weights.model_id, state="present", path=folder, detail=f"present at {folder}")
            if folder else ModelStatus(
                role=weights.role, model_id=weights.model_id, state="missing",
                detail=f"missing: run `fabula models pull {settings.profile.value}` (or set {weights.setting} to a local folder)",
            )
        )
    return statuses


def tiny_folder(role: str, settings: Settings) -> Path:
    """Where a tiny model lives once built: the illustration service builds its refiner beside its base."""
    if role == "refiner":
        return tiny_dir("illustrate", settings) / REFINER_FOLDER
    return tiny_dir(role, settings)


def _status_of(role: str, settings: Settings) -> ModelStatus:
    model_id = model_id_for(role, settings)
    setting = SETTING_FOR_ROLE[role]
    if role == "llm" and settings.llm_base_url:
        return ModelStatus(role=role, model_id=model_id, state="external", detail=f"served at {settings.llm_base_url} (FABULA_LLM_BASE_URL)")
    if model_id is None:
        switched_off = getattr(settings, f"{role}_model") is not None
        detail = f"switched off by {setting}" if switched_off else f"not used by the {settings.profile.value} profile"
        return ModelStatus(role=role, model_id=None, state="not_used", detail=detail)
    if model_id == RESTYLE:
        return ModelStatus(role=role, model_id=RESTYLE, state="present", detail="no weights: the reader's photo restyled with OpenCV")
    if model_id == TINY:
        folder = tiny_folder(role, settings)
        if folder.is_dir() and any(folder.iterdir()):
            return ModelStatus(
                role=role, model_id=TINY, state="present", path=str(folder), size_bytes=_folder_bytes(folder),
                detail=f"built locally at {folder}",
            )
        return ModelStatus(role=role, model_id=TINY, state="built_on_first_use", path=str(folder), detail=f"built locally on first use (into {folder})")
    if role == "llm" and is_gguf_model_id(model_id):
        try:
            gguf = gguf_file_for(model_id)
        except ModelUnavailable as exc:
            return ModelStatus(role=role, model_id=model_id, state="missing", detail=exc.message)
        engine = "llama.cpp" if settings.llm_engine.strip().lower() == "auto" else settings.llm_engine
        return ModelStatus(
            role=role, model_id=model_id, state="present", path=str(gguf), size_bytes=gguf.stat().st_size, detail=f"GGUF at {gguf} (runs on {engine})",
        )
    try:
        path = resolve_model_path(model_id, role=role, settings=settings)
    except ModelUnavailable:
        pull = settings.profile.value if not settings.profile.self_contained else "cpu"
        return ModelStatus(
            role=role, model_id=model_id, state="missing",
            detail=f"missing: run `fabula models pull {pull}` (or set {setting} to a local folder)",
        )
    return ModelStatus(
        role=role, model_id=model_id, state="present", path=str(path), size_bytes=_folder_bytes(path), detail=f"present at {path}"
    )


def _pull_one(role: str, model_id: str, settings: Settings, *, progress: Callable[[str], object]) -> PulledModel:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    endpoint, timeout_s = hub_endpoint(), hub_timeout_s()
    progress(f"{role}: asking {endpoint} about {model_id} …")
    try:
        info = HfApi(endpoint=endpoint).model_info(model_id, timeout=timeout_s, files_metadata=True)
        sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
        model_index = None
        if is_diffusers_repository(sizes):
            # Fetching one file by branch records refs/main, which is how the offline lookup finds the snapshot.
            marker_path = Path(hf_hub_download(model_id, MODEL_INDEX, endpoint=endpoint, etag_timeout=timeout_s))
            model_index = _read_json(marker_path)
            files = select_files(
                sizes, model_index=model_index, variant=weights_variant(settings.profile),
                skip_components=SHARED_WITH_BASE if role == "refiner" else (),
            )
            _require_weights(role, model_id, files)
            marker = MODEL_INDEX
        else:
            files = select_files(sizes)
            _require_weights(role, model_id, files)
            marker = "config.json" if "config.json" in files else files[0]
            marker_path = Path(hf_hub_download(model_id, marker, endpoint=endpoint, etag_timeout=timeout_s))
        commit = _commit_of(marker_path, marker)
        snapshot = _storage_folder(model_id) / "snapshots" / commit
        total = sum(sizes.get(name, 0) for name in files)
        missing = sum(sizes.get(name, 0) for name in files if not (snapshot / name).exists())
        _check_disk(role, model_id, missing, _storage_folder(model_id))
        to_fetch = f"{missing / GB:.2f} GB to download" if missing else "all here already"
        progress(f"{role}: {model_id}: {len(files)} files, {total / GB:.2f} GB ({to_fetch})")
        folder = snapshot_download(
            model_id, revision=commit, allow_patterns=[glob.escape(name) for name in files],
            endpoint=endpoint, etag_timeout=timeout_s,
        )
    except ModelPullFailed:
        raise
    except known_failures() as exc:
        profile = settings.profile.value
        raise explain(exc, role=role, model_id=model_id, endpoint=endpoint, timeout_s=timeout_s, profile=profile) from exc
    _forget_tree_listing(model_id, commit)
    path = resolve_model_path(model_id, role=role, settings=settings)
    if Path(folder).resolve() != path.resolve():
        fields = {"model": model_id, "pulled": folder, "found": str(path)}
        logger.warning("the offline lookup found another snapshot", extra={"fields": fields})
    progress(f"{role}: {model_id} ready at {path}")
    return PulledModel(
        role=role, model_id=model_id, action="downloaded" if missing else "up_to_date", path=str(path), revision=commit,
        files=len(files), size_bytes=total, downloaded_bytes=missing,
    )


def _pull_gguf(role: str, model_id: str, hub_file: tuple[str, str], settings: Settings, *, progress: Callable[[str], object]) -> PulledModel:
    """One GGUF file from a hub repository (`owner/repo/file.gguf`) into the cache, resumable."""
    from huggingface_hub import HfApi, hf_hub_download

    repository, file_name = hub_file
    endpoint, timeout_s = hub_endpoint(), hub_timeout_s()
    progress(f"{role}: asking {endpoint} about {repository} …")
    try:
        info = HfApi(endpoint=endpoint).model_info(repository, timeout=timeout_s, files_metadata=True)
        sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
        if file_name not in sizes:
            raise ModelPullFailed(
                f"The repository {repository} has no file {file_name}; set {SETTING_FOR_ROLE[role]} to `owner/repo/file.gguf` "
                "of a file it holds, or to a local .gguf file.", reason="not_found", param=SETTING_FOR_ROLE[role],
            )
        already = gguf_present(model_id)
        size = sizes[file_name]
        if already is None:
            _check_disk(role, model_id, size, _storage_folder(repository))
        progress(f"{role}: {model_id}: {size / GB:.2f} GB ({'all here already' if already else 'downloading'})")
        path = hf_hub_download(repository, file_name, endpoint=endpoint, etag_timeout=timeout_s)
    except ModelPullFailed:
        raise
    except known_failures() as exc:
        raise explain(exc, role=role, model_id=model_id, endpoint=endpoint, timeout_s=timeout_s, profile=settings.profile.value) from exc
    progress(f"{role}: {model_id} ready at {path}")
    return PulledModel(
        role=role, model_id=model_id, action="up_to_date" if already else "downloaded", path=str(path), files=1,
        size_bytes=size, downloaded_bytes=0 if already else size,
    )


def gguf_present(model_id: str) -> Path | None:
    try:
        return gguf_file_for(model_id)
    except ModelUnavailable:
        return None


def _forget_tree_listing(model_id: str, commit: str) -> None:
    """Drop the client's cached file list for `commit` so the offline lookup accepts a partial snapshot.

    huggingface_hub 2.x caches the repository's full file list (`trees/<commit>.json`) and, offline,
    refuses a snapshot that lacks any listed file unless the caller passes the same patterns. Fabula
    downloads a chosen subset on purpose, and its offline lookup passes no patterns.
    """
    listing = str(_storage_folder(model_id) / "trees" / f"{commit}.json")
    Path(listing).unlink(missing_ok=True)
    try:  # the client also keeps the listing in memory for this process
        from huggingface_hub import _tree_cache

        with _tree_cache._IN_MEMORY_TREE_CACHE_LOCK:
            _tree_cache._IN_MEMORY_TREE_CACHE.pop(listing, None)
    except (ImportError, AttributeError):
        pass


def _require_weights(role: str, model_id: str, files: list[str]) -> None:
    if not any(name.endswith((".safetensors", ".bin")) for name in files):
        raise ModelPullFailed(
            f"The {role} model '{model_id}' has no weights Fabula can load (safetensors in the transformers or diffusers "
            f"layout). Set {SETTING_FOR_ROLE[role]} to a repository in that layout, or to a local folder.",
            reason="not_found", param=SETTING_FOR_ROLE[role],
        )


def _storage_folder(model_id: str) -> Path:
    """Where the client keeps a repository in the cache: `<HF_HUB_CACHE>/models--org--name`."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE).expanduser().resolve() / repo_folder_name(repo_id=model_id, repo_type="model")


def _commit_of(path: Path, name: str) -> str:
    """The snapshot folder of a file that may sit in a subfolder of the snapshot."""
    depth = len(Path(name).parts)
    return path.parents[depth - 1].name


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _check_disk(role: str, model_id: str, needed: int, cache: Path) -> None:
    existing = next(parent for parent in [cache, *cache.parents] if parent.exists())
    free = shutil.disk_usage(existing).free
    if needed and needed + DISK_MARGIN_BYTES > free:
        raise ModelPullFailed(
            f"Not enough disk space for the {role} model '{model_id}': it needs {needed / GB:.1f} GB (plus 1 GB to spare) "
            f"in {cache}, and {free / GB:.1f} GB are free. Free some space or set HF_HOME to a folder on a bigger disk.",
            reason="disk", param="HF_HOME",
        )


def _is_local_path(model_id: str) -> bool:
    return model_id.startswith(("/", "./", "../", "~")) or Path(os.path.expanduser(model_id)).is_dir()


def _local_folder(role: str, model_id: str) -> str:
    folder = Path(os.path.expanduser(model_id))
    if not folder.is_dir():
        raise ModelPullFailed(
            f"{SETTING_FOR_ROLE[role]} points at {folder}, which is not a folder on this machine. "
            "Copy the model there, or unset the setting to use the profile's model from the hub.",
            reason="not_found", param=SETTING_FOR_ROLE[role],
        )
    return str(folder)


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files in `folder`, following the cache's symlinks to the blobs."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from gpu_setup.download_plan import (
    GB, DownloadPlan, PlannedModel, check_space, gigabytes, hub_cache, plan_gguf, plan_picture, plan_snapshot, storage_folder,
)
from gpu_setup.hub_errors import ModelPullFailed, explain, known_failures, offline_error, offline_variable
from gpu_setup.picture_weights import PictureWeights, picture_weights
from gpu_setup.picture_weights import present as present_picture_weights
from services.illustrate.tiny import REFINER_FOLDER
from services.llm.gguf import gguf_file_for, hub_gguf, is_gguf_model_id
from shared.errors import InvalidRequest, ModelUnavailable
from shared.profiles import RESTYLE, SETTING_FOR_ROLE, TINY, model_id_for, resolve_model_path, tiny_dir
from shared.settings import Profile, Settings

logger = logging.getLogger(__name__)

ROLES = ("caption", "illustrate", "refiner", "llm")
DEFAULT_HUB_TIMEOUT_S = 10.0

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
    """Each (role, model id) in `models` and each of the picture weights in `extras`, from the hub: first what each
    needs and how big it is (said in one line), then the files."""
    variable = offline_variable()
    if variable is not None:
        raise offline_error(variable, settings.profile.value)
    endpoint, timeout_s, profile = hub_endpoint(), hub_timeout_s(), settings.profile
    planned: list[PlannedModel] = []
    for role, model_id in models:
        progress(f"{role}: asking {endpoint} about {model_id} …")
        hub_file = hub_gguf(model_id) if role == "llm" else None
        with _explained(role, model_id, endpoint=endpoint, timeout_s=timeout_s, profile=profile):
            if hub_file:
                planned.append(plan_gguf(role, model_id, hub_file, endpoint=endpoint, timeout_s=timeout_s))
            else:
                planned.append(plan_snapshot(role, model_id, profile, endpoint=endpoint, timeout_s=timeout_s))
    for weights in extras:
        with _explained(weights.role, weights.model_id, endpoint=endpoint, timeout_s=timeout_s, profile=profile):
            planned.append(plan_picture(weights, endpoint=endpoint, timeout_s=timeout_s))
    plan = DownloadPlan(models=planned)
    progress(plan.summary(profile, endpoint, str(hub_cache())))
    check_space(f"the {profile.value} profile's {len(planned)} downloads together", plan.missing_bytes, hub_cache())  # each fits alone
    results = []
    for model in planned:
        with _explained(model.role, model.model_id, endpoint=endpoint, timeout_s=timeout_s, profile=profile):
            results.append(_fetch(model, settings, endpoint=endpoint, timeout_s=timeout_s, progress=progress))
    return results


@contextmanager
def _explained(role: str, model_id: str, *, endpoint: str, timeout_s: float, profile: Profile) -> Iterator[None]:
    """Any failure of a hub call about `model_id` becomes one `ModelPullFailed` that says what to do."""
    try:
        yield
    except ModelPullFailed:
        raise
    except known_failures() as exc:
        raise explain(exc, role=role, model_id=model_id, endpoint=endpoint, timeout_s=timeout_s, profile=profile.value) from exc


def _fetch(model: PlannedModel, settings: Settings, *, endpoint: str, timeout_s: float, progress: Callable[[str], object]) -> PulledModel:
    """The files of one planned model into the cache. The hub client shows a progress bar on a terminal, resumes a
    file whose connection drops, and keeps every finished file, so a stopped pull goes on from there next time."""
    from huggingface_hub import hf_hub_download, snapshot_download

    state = f"{gigabytes(model.missing_bytes)} to download" if model.missing_files else "all here already"
    files = f"{len(model.files)} file{'s' if len(model.files) > 1 else ''}"
    progress(f"{model.role}: {model.model_id}: {files}, {gigabytes(model.size_bytes)} ({state})")
    patterns = [glob.escape(name) for name in model.files]
    if model.kind == "gguf":
        path = model.present_at or hf_hub_download(model.repository, model.files[0], endpoint=endpoint, etag_timeout=timeout_s)
    elif model.kind == "picture":
        path = model.present_at or snapshot_download(model.repository, allow_patterns=patterns, endpoint=endpoint, etag_timeout=timeout_s)
    else:
        folder = snapshot_download(model.repository, revision=model.revision, allow_patterns=patterns, endpoint=endpoint, etag_timeout=timeout_s)
        _forget_tree_listing(model.repository, model.revision or "")
        path = str(resolve_model_path(model.model_id, role=model.role, settings=settings))
        if Path(folder).resolve() != Path(path).resolve():
            fields = {"model": model.model_id, "pulled": folder, "found": path}
            logger.warning("the offline lookup found another snapshot", extra={"fields": fields})
    progress(f"{model.role}: {model.model_id} ready at {path}")
    return PulledModel(
        role=model.role, model_id=model.model_id, action="downloaded" if model.missing_files else "up_to_date", path=path,
        revision=model.revision, files=len(model.files), size_bytes=model.size_bytes, downloaded_bytes=model.missing_bytes,
    )


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


def _forget_tree_listing(model_id: str, commit: str) -> None:
    """Drop the client's cached file list for `commit` so the offline lookup accepts a partial snapshot.

    huggingface_hub 2.x caches the repository's full file list (`trees/<commit>.json`) and, offline,
    refuses a snapshot that lacks any listed file unless the caller passes the same patterns. Fabula
    downloads a chosen subset on purpose, and its offline lookup passes no patterns.
    """
    listing = str(storage_folder(model_id) / "trees" / f"{commit}.json")
    Path(listing).unlink(missing_ok=True)
    try:  # the client also keeps the listing in memory for this process
        from huggingface_hub import _tree_cache

        with _tree_cache._IN_MEMORY_TREE_CACHE_LOCK:
            _tree_cache._IN_MEMORY_TREE_CACHE.pop(listing, None)
    except (ImportError, AttributeError):
        pass


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

"""Turn what goes wrong while downloading from the model hub into one message that says what to do.

`fabula models pull` is the only command that reaches a hub, usually on a machine set up once, often
behind a proxy or with no network at all; the person running it needs to know in seconds whether the
network, a licence, the disk or an offline switch is in the way, and what to set instead.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket

from shared.errors import ModelUnavailable
from shared.profiles import SETTING_FOR_ROLE

_TRUE = {"1", "true", "yes", "on"}


class ModelPullFailed(ModelUnavailable):
    """A download did not happen; `reason` is one of offline, unreachable, gated, not_found, disk, hub_error."""

    error_type = "model_pull_failed"

    def __init__(self, message: str, *, reason: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.reason = reason


def offline_variable() -> str | None:
    """The variable that keeps the hub client offline in this process, if any (read the way the client reads it)."""
    from huggingface_hub import constants

    name = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    if os.environ.get(name, "").strip().lower() in _TRUE:
        return name
    # The client reads the variables once, at import: an offline start stays offline.
    return "HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None


def offline_error(variable: str, profile: str) -> ModelPullFailed:
    return ModelPullFailed(
        f"Downloads are blocked: {variable}=1 is set in this environment, which keeps the Hugging Face client offline "
        f"(Fabula's services run that way on purpose). Run the pull with it switched off: "
        f"`HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 fabula models pull {profile}`, or `unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE` first.",
        reason="offline",
        param=variable,
    )


def copy_instead() -> str:
    settings = ", ".join(f"{setting}=/path/to/folder" for setting in SETTING_FOR_ROLE.values())
    return (
        "Without network access here, download on another machine (`fabula models pull` there) and copy its "
        f"Hugging Face cache into HF_HOME, or copy the model folders and point the settings at them ({settings})."
    )


def explain(exc: BaseException, *, role: str, model_id: str, endpoint: str, timeout_s: float, profile: str) -> ModelPullFailed:
    """One `ModelPullFailed` for any failure of a hub call about `model_id`."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    setting = SETTING_FOR_ROLE[role]
    chain = _chain(exc)
    if any(isinstance(error, OfflineModeIsEnabled) for error in chain):
        return offline_error(offline_variable() or "HF_HUB_OFFLINE", profile)
    if isinstance(exc, GatedRepoError) or _status(exc) in (401, 403):
        return ModelPullFailed(
            f"The {role} model '{model_id}' needs a Hugging Face account that has accepted its licence: accept it at "
            f"{endpoint}/{model_id}, then set HF_TOKEN to an access token (or run `hf auth login`) and pull again.",
            reason="gated", param="HF_TOKEN",
        )
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        return ModelPullFailed(
            f"The {role} model '{model_id}' was not found at {endpoint}. Check {setting} for a typo; "
            "a private model also needs HF_TOKEN.",
            reason="not_found", param=setting,
        )
    if any(isinstance(error, OSError) and error.errno == errno.ENOSPC for error in chain):
        return ModelPullFailed(
            f"The disk filled up while downloading the {role} model '{model_id}'. Free some space, or set HF_HOME to a "
            "folder on a bigger disk, and pull again (finished files are kept).",
            reason="disk", param="HF_HOME",
        )
    network = next((error for error in chain if _is_network_error(error)), None)
    if network is not None:
        timed_out = any(isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower() for error in chain)
        what = (
            f"did not answer within {timeout_s:g} s"
            if timed_out
            else f"could not be reached ({type(network).__name__}: {_first_line(network)})"
        )
        return ModelPullFailed(
            f"The model hub at {endpoint} {what}, so the {role} model '{model_id}' was not downloaded. "
            "Check the network and any proxy (HTTPS_PROXY), or set HF_ENDPOINT to a mirror you can reach. "
            + copy_instead(),
            reason="unreachable", param="HF_ENDPOINT",
        )
    if isinstance(exc, HfHubHTTPError):
        return ModelPullFailed(
            f"The model hub at {endpoint} refused the download of the {role} model '{model_id}' "
            f"(HTTP {_status(exc) or '?'}: {_first_line(exc)}). Try again later, or set HF_ENDPOINT to a mirror. "
            + copy_instead(),
            reason="hub_error", param="HF_ENDPOINT",
        )
    return ModelPullFailed(
        f"Downloading the {role} model '{model_id}' from {endpoint} failed ({type(exc).__name__}: {_first_line(exc)}). "
        + copy_instead(),
        reason="hub_error", param=setting,
    )


def known_failures() -> tuple[type[BaseException], ...]:
    """What a hub call raises when the network, the hub or the disk fails, whichever HTTP library the client uses."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    kinds: list[type[BaseException]] = [HfHubHTTPError, LocalEntryNotFoundError, OSError, ConnectionError, TimeoutError]
    kinds.extend(_transport_errors())
    return tuple(kinds)


def _transport_errors() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found.append(module.TransportError)
    try:
        import requests

        found.append(requests.RequestException)
    except ImportError:
        pass
    return found


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return any(isinstance(exc, kind) for kind in _transport_errors())


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors behind it: the hub client wraps connection failures in its own errors."""
    chain = [exc]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None and inner not in chain:
        chain.append(inner)
    return chain


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__

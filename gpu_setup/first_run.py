"""`fabula up` on a machine without real weights: fetch the profile that fits it first, when the model hub answers.

Only an `auto` start fetches (`make up`, `fabula up`), never one given a profile (`--profile offline`,
FABULA_PROFILE) or `--no-fetch`. The hub is asked one short question first: a refused connection, a name that does
not resolve or a hub that stays silent for `PROBE_TIMEOUT_S` means the offline profile, said in one line, within
seconds. The download itself is `fabula models pull PROFILE` (`pull_models`) in a child process: this process
keeps the hub client switched off (HF_HUB_OFFLINE=1, which the client reads once, at import), while the child runs
with the shell's own setting, and with progress bars.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

import httpx

from gpu_setup.assignment import GpuInfo
from gpu_setup.doctor import gpu_plan_for, launch_environment, offline_setting
from gpu_setup.models import hub_endpoint, hub_timeout_s
from gpu_setup.profile_choice import Machine, ProfileChoice, best_profile, machine_fit
from shared.settings import Profile, Settings

PROBE_TIMEOUT_S = 3.0
# What `fabula` sets for itself and the child must see as the shell had it: the hub switch and the progress bars.
SHELL_VARIABLES = ("HF_HUB_OFFLINE", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")

Pull = Callable[[Profile, Mapping[str, str]], bool]


def probe_timeout_s() -> float:
    """Seconds the hub has to answer the first question: `PROBE_TIMEOUT_S`, or less when HF_HUB_ETAG_TIMEOUT says less."""
    return min(PROBE_TIMEOUT_S, hub_timeout_s())


def hub_problem(endpoint: str, timeout_s: float) -> str | None:
    """None when the hub at `endpoint` answers an HTTP request within `timeout_s`; else what happened, in a few words.

    The request runs on a thread that is given up on after `timeout_s` (plus a second): a name lookup is outside
    httpx's timeouts and can otherwise take far longer than the answer would.
    """
    answer: list[str | None] = []

    def ask() -> None:
        try:
            response = httpx.head(f"{endpoint}/", timeout=timeout_s)
        except httpx.TimeoutException:
            answer.append(f"did not answer within {timeout_s:g} s")
        except httpx.HTTPError as exc:
            answer.append(f"could not be reached ({exc or type(exc).__name__})")
        else:
            answer.append(None if response.status_code < 500 else f"answered HTTP {response.status_code}")

    asking = threading.Thread(target=ask, name="hub-probe", daemon=True)
    asking.start()
    asking.join(timeout_s + 1.0)
    return answer[0] if answer else f"did not answer within {timeout_s:g} s"


def pull_environment(environment: Mapping[str, str] | None = None, launched: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the child that downloads: this process's, with the variables `fabula` set for itself put
    back as the shell had them (`launched`, by default the environment this process started with)."""
    child = dict(os.environ if environment is None else environment)
    launched = launch_environment() if launched is None else launched
    for name in SHELL_VARIABLES:
        if name in launched:
            child[name] = launched[name]
        else:
            child.pop(name, None)
    child["PYTHONUNBUFFERED"] = "1"  # its lines arrive in order with its progress bars
    return child


def first_run_profile(
    local: ProfileChoice,
    settings: Settings,
    *,
    pull: Pull,
    say: Callable[[str], object] = print,
    machine: Machine | None = None,
    launched: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> ProfileChoice:
    """The profile an `auto` start of `fabula up` runs, said in its first line.

    `local` is the best profile whose weights are here. When that is a real one (cpu, gpu), it is the answer. Else,
    when the profile that fits this machine downloads its weights and the hub answers, that profile is fetched with
    `pull(profile, environment)` (which says whether the download finished) and run; anything in the way means
    `local`, with the reason. `machine` (this one by default), `launched` (the environment this process started with)
    and `timeout_s` (the hub's time to answer) are there to be handed in.
    """
    launched = launch_environment() if launched is None else launched
    if not local.profile.self_contained:
        return _said(local, say)
    machine = Machine.here() if machine is None else machine
    fits, _ = machine_fit(settings, machine)
    if fits.self_contained:
        return _said(local, say)
    gpu_plan = gpu_plan_for(machine.gpus, settings) if fits == Profile.gpu else None
    if gpu_plan is not None and (not gpu_plan.fits or gpu_plan.changes):
        advice = "the gpu profile fits these GPUs only with other settings (`fabula doctor` shows them; set them, then `fabula models pull gpu`)"
        return _said(_instead(local, advice), say)
    if (variable := offline_setting(launched)) is not None:
        return _said(_instead(local, f"{variable}=1 in this environment keeps `fabula up` from fetching the {fits.value} profile's weights"), say)
    endpoint = hub_endpoint()
    problem = hub_problem(endpoint, probe_timeout_s() if timeout_s is None else timeout_s)
    if problem is not None:
        return _said(_instead(local, f"the model hub at {endpoint} {problem}, so nothing was fetched"), say)
    fetching = ProfileChoice(
        profile=fits, automatic=True,
        reason=(
            f"fits this machine: {_why_it_fits(fits, machine.gpus)}; its weights are not here yet, so they come from {endpoint} first "
            f"(`fabula up --no-fetch` starts {local.profile.value} instead)"
        ),
    )
    say(fetching.line())
    if pull(fits, pull_environment(launched=launched)) and best_profile(settings, machine=machine).profile == fits:
        return fetching
    stopped = _instead(local, f"the {fits.value} profile's download did not finish (see above); `fabula up` goes on from there next time")
    return _said(stopped, say)


def _why_it_fits(profile: Profile, gpus: list[GpuInfo]) -> str:
    if profile == Profile.gpu:
        return "the gpu profile's plan fits these GPUs"
    return "no CUDA GPU is visible" if not gpus else "the gpu profile does not fit these GPUs"


def _instead(local: ProfileChoice, why: str) -> ProfileChoice:
    return ProfileChoice(profile=local.profile, reason=f"{why}; {local.reason}", automatic=True)


def _said(choice: ProfileChoice, say: Callable[[str], object]) -> ProfileChoice:
    say(choice.line())
    return choice

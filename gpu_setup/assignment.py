"""Which service runs on which GPU: a pure planner over memory estimates, for 0, 1, 2, 3 or more GPUs.

Only the gpu profile uses GPUs; tiny and cpu run every service on the CPU (as `fabula up` starts them).

The planner tries every choice of model variant (see `memory.py`) and every placement of the services on
the GPUs, keeps those that fit each GPU's usable memory, and picks the best: the profile's own models
first, then the illustrate service on a GPU of its own (SDXL keeps a GPU busy), then the most even load.
When nothing fits it says why in plain words with the numbers, and what would fit instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from pydantic import BaseModel, Field

from gpu_setup.memory import SERVICES, ServiceOption, model_changes, options_for
from shared.errors import FabulaError
from shared.settings import Profile, Settings

HEADROOM_FRACTION = 0.04  # fragmentation and whatever else holds GPU memory (a desktop, another process)
GPU_ENVIRONMENT = {"caption": "FABULA_CAPTION_GPU", "illustrate": "FABULA_ILLUSTRATE_GPU", "llm": "FABULA_LLM_GPU"}


class GpuPlanError(FabulaError):
    """The services do not fit on this machine's GPUs as configured; the message says what would."""

    status_code = 503
    error_type = "gpu_plan_error"


class GpuInfo(BaseModel):
    index: int
    name: str = "GPU"
    total_gib: float
    free_gib: float | None = None
    compute_capability: str | None = None
    bf16: bool = True

    @property
    def usable_gib(self) -> float:
        return round(self.total_gib * (1 - HEADROOM_FRACTION), 1)

    def describe(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.total_gib:.1f} GiB)"


class Placement(BaseModel):
    service: str
    device: str = Field(description="`cpu`, or `cuda:N` for `fabula serve --device`.")
    gpu_index: int | None = None
    option: str
    models: dict[str, str | None]
    need_gib: float
    offload: bool = False
    why: str = ""

    def command(self, profile: Profile) -> str:
        return f"fabula serve {self.service} --profile {profile.value} --device {self.device}"


class GpuLoad(BaseModel):
    index: int
    name: str
    total_gib: float
    usable_gib: float
    planned_gib: float
    services: list[str]


class Assignment(BaseModel):
    profile: Profile
    fits: bool
    reason: str
    placements: list[Placement] = Field(default_factory=list)
    gpus: list[GpuLoad] = Field(default_factory=list)
    changes: dict[str, str] = Field(default_factory=dict, description="Settings to set before starting: models, offload.")
    environment: dict[str, str] = Field(default_factory=dict, description="`changes` plus the GPU pins docker-compose.yml reads.")
    notes: list[str] = Field(default_factory=list)
    alternative: Assignment | None = Field(default=None, description="What fits with CPU offload when this does not.")

    def devices(self) -> dict[str, str]:
        """`{service: device}` for `fabula serve --device`; raises `GpuPlanError` with the reason when nothing fits."""
        if not self.fits:
            raise GpuPlanError(self.reason)
        return {placement.service: placement.device for placement in self.placements}

    def describe(self) -> str:
        lines = [self.reason]
        for placement in self.placements:
            need = f" (~{placement.need_gib:.1f} GiB)" if placement.gpu_index is not None else ""
            lines.append(f"  {placement.service:<10} → {placement.device:<7} {placement.option}{need}")
        if self.changes:
            lines.append("  set first: " + " ".join(f"{key}={value}" for key, value in self.changes.items()))
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.alternative is not None:
            lines.append("With CPU offload:")
            lines.extend("  " + line for line in self.alternative.describe().splitlines())
        return "\n".join(lines)


def plan_assignment(
    gpus: list[GpuInfo],
    profile: Profile,
    *,
    offload: bool = False,
    configured: Mapping[str, str | None] | None = None,
    external_llm: bool = False,
) -> Assignment:
    """Plan the services onto `gpus` for `profile`.

    `offload` says whether FABULA_OFFLOAD is on; `configured` holds the roles whose model the operator set
    (see `configured_models`), so the plan does not ask for what is already set; `external_llm` leaves the
    LLM out (served by vLLM elsewhere or a hosted API through FABULA_LLM_BASE_URL).
    """
    services = [service for service in SERVICES if not (external_llm and service == "llm")]
    if profile != Profile.gpu:
        return _on_cpu(profile, services, f"The {profile.value} profile runs every service on the CPU; GPUs are not used.")
    if not gpus:
        return Assignment(
            profile=profile, fits=False,
            reason=(
                "No CUDA GPU is visible (torch.cuda.is_available() is False, or torch is a CPU build), so the gpu profile "
                "cannot run here. Use the cpu profile (`fabula models pull cpu`, then `fabula up --profile cpu`), "
                "or the tiny profile for a quick offline demo."
            ),
        )
    plan = _best_plan(gpus, profile, services, offload=offload, offload_is_set=offload, configured=configured)
    if plan.fits and offload:
        resident = _best_plan(gpus, profile, services, offload=False, offload_is_set=False, configured=configured)
        if resident.fits and not resident.changes:
            plan.notes.append("These GPUs hold every model without offload: FABULA_OFFLOAD=false makes pictures faster.")
    if plan.fits or offload:
        return plan
    with_offload = _best_plan(gpus, profile, services, offload=True, offload_is_set=False, configured=configured)
    if with_offload.fits:
        changes = " ".join(f"{key}={value}" for key, value in with_offload.changes.items())
        plan.reason += f" It fits with CPU offload for SDXL: set {changes}."
        plan.alternative = with_offload
    return plan


def configured_models(settings: Settings) -> dict[str, str | None]:
    """The roles whose model the operator set (FABULA_CAPTION_MODEL, ...); None means switched off."""
    from shared.profiles import model_id_for

    return {
        role: model_id_for(role, settings)
        for role in ("caption", "illustrate", "refiner", "llm")
        if getattr(settings, f"{role}_model") is not None
    }


def plan_for_settings(gpus: list[GpuInfo], settings: Settings) -> Assignment:
    """`plan_assignment` with the profile, offload switch, configured models and LLM endpoint from `settings`."""
    return plan_assignment(
        gpus, settings.profile, offload=settings.offload, configured=configured_models(settings),
        external_llm=settings.llm_base_url is not None,
    )


def _on_cpu(profile: Profile, services: list[str], reason: str) -> Assignment:
    placements = [
        Placement(service=service, device="cpu", option=f"{profile.value} profile", models={}, need_gib=0.0) for service in services
    ]
    return Assignment(profile=profile, fits=True, reason=reason, placements=placements)


def _best_plan(
    gpus: list[GpuInfo],
    profile: Profile,
    services: list[str],
    *,
    offload: bool,
    offload_is_set: bool,
    configured: Mapping[str, str | None] | None,
) -> Assignment:
    ladders = [options_for(profile, service, offload=offload, configured=configured) for service in services]
    best: tuple | None = None
    for options in itertools.product(*ladders):
        for indices in itertools.product(range(len(gpus)), repeat=len(services)):
            loads = [0.0] * len(gpus)
            for option, index in zip(options, indices, strict=True):
                loads[index] += option.need_gib
            if any(load > gpu.usable_gib for load, gpu in zip(loads, gpus, strict=True)):
                continue
            score = (
                round(sum(option.cost for option in options), 2),
                _illustrate_shares(services, indices),
                round(max(load / gpu.usable_gib for load, gpu in zip(loads, gpus, strict=True)), 3),
                indices,
            )
            if best is None or score < best[0]:
                best = (score, options, indices)
    if best is None:
        return Assignment(profile=profile, fits=False, reason=_why_not(gpus, ladders, offload, services))
    _, options, indices = best
    return _assignment(
        gpus, profile, services, options, indices, offload=offload, offload_is_set=offload_is_set, configured=configured
    )


def _illustrate_shares(services: list[str], indices: tuple[int, ...]) -> int:
    if "illustrate" not in services:
        return 0
    mine = indices[services.index("illustrate")]
    return sum(1 for service, index in zip(services, indices, strict=True) if service != "illustrate" and index == mine)


def _assignment(
    gpus: list[GpuInfo],
    profile: Profile,
    services: list[str],
    options: tuple[ServiceOption, ...],
    indices: tuple[int, ...],
    *,
    offload: bool,
    offload_is_set: bool,
    configured: Mapping[str, str | None] | None,
) -> Assignment:
    # `indices` are positions in `gpus`; a placement reports the GPU's own index (what nvidia-smi and
    # CUDA_VISIBLE_DEVICES call it).
    placements = [
        Placement(
            service=service, device=f"cuda:{gpus[position].index}", gpu_index=gpus[position].index, option=option.label,
            models=option.models, need_gib=option.need_gib, offload=option.offload, why=option.why,
        )
        for service, option, position in zip(services, options, indices, strict=True)
    ]
    changes: dict[str, str] = {}
    for option in options:
        changes.update(model_changes(option, profile, configured))
    if offload and not offload_is_set:
        changes["FABULA_OFFLOAD"] = "true"
    loads = [
        GpuLoad(
            index=gpu.index, name=gpu.name, total_gib=gpu.total_gib, usable_gib=gpu.usable_gib,
            planned_gib=round(sum(p.need_gib for p, at in zip(placements, indices, strict=True) if at == position), 1),
            services=[p.service for p, at in zip(placements, indices, strict=True) if at == position],
        )
        for position, gpu in enumerate(gpus)
    ]
    environment = {**changes, **{GPU_ENVIRONMENT[p.service]: str(p.gpu_index) for p in placements}}
    return Assignment(
        profile=profile, fits=True, reason=_why_it_fits(loads), placements=placements, gpus=loads,
        changes=changes, environment=environment, notes=_notes(placements, loads),
    )


def _why_it_fits(loads: list[GpuLoad]) -> str:
    used = [load for load in loads if load.services]
    parts = [
        f"{' + '.join(load.services)} on GPU {load.index} ({load.name}): ~{load.planned_gib:.1f} of {load.usable_gib:.1f} GiB usable"
        for load in used
    ]
    count = "one GPU" if len(used) == 1 else f"{len(used)} GPUs"
    return f"Fits on {count}: " + "; ".join(parts) + "."


def _notes(placements: list[Placement], loads: list[GpuLoad]) -> list[str]:
    notes = [f"{p.service}: {p.option} — {p.why}." for p in placements if p.why]
    llm = next((p for p in placements if p.service == "llm"), None)
    if llm is not None:
        load = next(load for load in loads if load.index == llm.gpu_index)
        if len(load.services) > 1:
            share = min(0.9, round(llm.need_gib / load.total_gib, 2))
            notes.append(
                f"If vLLM serves the LLM on GPU {load.index}, start it with --gpu-memory-utilization {share}: "
                "by default vLLM takes 90% of the GPU for itself."
            )
    return notes


def _why_not(gpus: list[GpuInfo], ladders: list[list[ServiceOption]], offload: bool, services: list[str]) -> str:
    smallest = [min(ladder, key=lambda option: option.need_gib) for ladder in ladders]
    total_need = round(sum(option.need_gib for option in smallest), 1)
    total_usable = round(sum(gpu.usable_gib for gpu in gpus), 1)
    biggest = max(gpus, key=lambda gpu: gpu.usable_gib)
    needs = ", ".join(f"{option.service} {option.need_gib:.1f} GiB ({option.label})" for option in smallest)
    have = ", ".join(gpu.describe() for gpu in gpus)
    too_big = [option for option in smallest if option.need_gib > biggest.usable_gib]
    if too_big:
        detail = f"{too_big[0].service} alone needs more than the {biggest.usable_gib:.1f} GiB usable on {biggest.describe()}"
    elif total_need > total_usable:
        verb = "offers" if len(gpus) == 1 else "offer"
        detail = f"together {total_need:.1f} GiB, and {have} {verb} {total_usable:.1f} GiB usable"
    else:
        detail = f"no split of the services across {have} gives each GPU a share it can hold"
    mode = "with CPU offload" if offload else "without offload"
    hosted = ", point FABULA_LLM_BASE_URL at a hosted LLM to free the LLM's share" if "llm" in services else ""
    return (
        f"Even the smallest configuration {mode} does not fit: {needs}; {detail}. "
        f"Use the cpu profile{hosted}, or add GPU memory."
    )

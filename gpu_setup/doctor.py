"""`fabula doctor`: what this machine has (GPUs, memory, disk, weights) and which profile and GPU plan fit.

It answers the questions a first deployment stalls on: does torch see the GPUs, do the models fit, where
does each service go, what must be set, are the weights here, is there room for them. It works the same
on a laptop without a GPU, where it says so and recommends the cpu (or, short of memory, the offline) profile.
The profile it reports on is the one `fabula up` would run (see `profile_choice.py`).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from gpu_setup.assignment import Assignment, GpuInfo, plan_for_settings
from gpu_setup.memory import GIB
from gpu_setup.models import ModelStatus, model_status
from shared.settings import Profile, Settings

_TRUE = {"1", "true", "yes", "on"}
CPU_PROFILE_MEMORY_GIB = 16.0  # SDXL-Turbo, a 0.5B LLaVA and a 1.5B LLM in CPU memory, with room to work


class DiskSpace(BaseModel):
    label: str
    path: str
    free_gb: float
    total_gb: float


class DoctorReport(BaseModel):
    python_version: str
    torch_version: str | None
    torch_cuda_build: str | None = Field(description="The CUDA version torch was built with; None for a CPU build.")
    driver_version: str | None
    gpus: list[GpuInfo]
    memory_gib: float | None
    profile: Profile
    recommended_profile: Profile
    recommendation: str
    assignment: Assignment
    gpu_assignment: Assignment | None = Field(default=None, description="The gpu profile's plan, when another is configured.")
    models: list[ModelStatus]
    disks: list[DiskSpace]
    offline: str | None = Field(description="The variable that keeps `fabula models pull` offline, if the environment sets it.")
    job_database: str = Field(default="", description="The job database and whether it opens (a damaged file is named with what to do).")
    notes: list[str] = Field(default_factory=list)


def collect_gpus() -> list[GpuInfo]:
    """Every CUDA GPU torch can see, with total and free memory; an empty list without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        gpus.append(
            GpuInfo(
                index=index, name=properties.name, total_gib=round(total / GIB, 2), free_gib=round(free / GIB, 2),
                compute_capability=f"{properties.major}.{properties.minor}", bf16=properties.major >= 8,
            )
        )
    return gpus


def launch_environment() -> Mapping[str, str]:
    """The environment this process was started with, before `fabula` switched the hub client off for itself.

    `fabula` sets HF_HUB_OFFLINE=1 for every command but `fabula models`, so `os.environ` would blame the shell for
    a variable the CLI set. Linux keeps the starting environment in /proc/self/environ; elsewhere `os.environ` is
    the best there is.
    """
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {name: value for name, _, value in pairs}


def offline_setting(environment: Mapping[str, str]) -> str | None:
    """The variable in `environment` that would keep `fabula models pull` offline, read as the hub client reads it:
    HF_HUB_OFFLINE when it is set at all, else TRANSFORMERS_OFFLINE."""
    name = "HF_HUB_OFFLINE" if environment.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    return name if environment.get(name, "").strip().lower() in _TRUE else None


def doctor_report(
    settings: Settings,
    *,
    gpus: list[GpuInfo] | None = None,
    environment: Mapping[str, str] | None = None,
    job_database: Callable[[Settings], str] | None = None,
) -> DoctorReport:
    """Everything `fabula doctor` prints; `gpus` defaults to what `collect_gpus` finds and `environment` (read for
    the hub's offline switches) to `os.environ`. `job_database` says whether the job database opens: the web app
    hands in its own check (this package sits below the web app and does not import it)."""
    gpus = collect_gpus() if gpus is None else gpus
    torch_version, cuda_build = _torch_versions()
    memory = memory_gib()
    assignment = plan_for_settings(gpus, settings)
    gpu_plan: Assignment | None = assignment
    if settings.profile != Profile.gpu:
        gpu_plan = gpu_plan_for(gpus, settings)
    recommended, recommendation = fitting_profile(gpus, gpu_plan, memory)
    return DoctorReport(
        python_version=platform.python_version(), torch_version=torch_version, torch_cuda_build=cuda_build,
        driver_version=_driver_version() if gpus else None, gpus=gpus, memory_gib=memory, profile=settings.profile,
        recommended_profile=recommended, recommendation=recommendation, assignment=assignment,
        gpu_assignment=gpu_plan if settings.profile != Profile.gpu else None, models=model_status(settings),
        disks=_disks(settings), offline=offline_setting(os.environ if environment is None else environment), notes=_notes(gpus, settings),
        job_database=job_database(settings) if job_database else "",
    )


def format_report(report: DoctorReport) -> str:
    lines = ["Fabula doctor", ""]
    torch_line = f"torch {report.torch_version or 'not installed'}, " + (
        f"built for CUDA {report.torch_cuda_build}" if report.torch_cuda_build else "a CPU-only build"
    )
    driver = f", NVIDIA driver {report.driver_version}" if report.driver_version else ""
    lines.append(f"System: Python {report.python_version}, {torch_line}{driver}")
    if report.memory_gib is not None:
        lines.append(f"Memory: {report.memory_gib:.1f} GiB")
    if report.gpus:
        for gpu in report.gpus:
            free = f", {gpu.free_gib:.1f} GiB free" if gpu.free_gib is not None else ""
            capability = gpu.compute_capability or "?"
            lines.append(
                f"GPU {gpu.index}: {gpu.name}, {gpu.total_gib:.1f} GiB{free}, compute capability {capability}, "
                f"bf16 {'yes' if gpu.bf16 else 'no'}"
            )
    else:
        lines.append("GPUs: none visible to torch.")
    lines += ["", f"Fits this machine: the {report.recommended_profile.value} profile", f"  {report.recommendation}"]
    if report.profile != report.recommended_profile and report.profile.self_contained and not report.recommended_profile.self_contained:
        wanted = report.recommended_profile.value
        lines += [
            f"  Its weights are not here: `fabula up` fetches them first when the model hub answers (`fabula models pull {wanted}` "
            f"does only that), and runs the {report.profile.value} profile when it does not."
        ]
    lines += ["", f"Plan for the {report.profile.value} profile:"]
    lines += ["  " + line for line in report.assignment.describe().splitlines()]
    if report.gpu_assignment is not None:
        lines += ["", "Plan for the gpu profile:"]
        lines += ["  " + line for line in report.gpu_assignment.describe().splitlines()]
    lines += ["", f"Models ({report.profile.value} profile):"]
    lines += ["  " + status.describe() for status in report.models]
    lines += ["", "Disk:"]
    lines += [f"  {disk.label}: {disk.path}: {disk.free_gb:.1f} GB free of {disk.total_gb:.1f} GB" for disk in report.disks]
    if report.job_database:
        lines += ["", f"Job database: {report.job_database}"]
    lines += [
        "", "Downloads: Fabula serves offline (it sets HF_HUB_OFFLINE=1 itself); only `fabula models pull`, and `fabula up` on a "
        "machine without real weights (unless given a profile or --no-fetch), reach the hub.",
    ]
    if report.offline:
        lines += [
            f"  {report.offline}=1 is set in this environment, so `fabula models pull` cannot download: run it with "
            f"`{report.offline}=0 fabula models pull …`, or unset {report.offline} first."
        ]
    if report.notes:
        lines += ["", "Notes:"] + [f"  - {note}" for note in report.notes]
    return "\n".join(lines)


def gpu_plan_for(gpus: list[GpuInfo], settings: Settings) -> Assignment | None:
    """The gpu profile's plan for these GPUs (the other settings as configured); None without a GPU."""
    return plan_for_settings(gpus, settings.model_copy(update={"profile": Profile.gpu})) if gpus else None


def fitting_profile(gpus: list[GpuInfo], gpu_plan: Assignment | None, memory: float | None) -> tuple[Profile, str]:
    """The profile this machine's hardware suits, whatever weights it holds, and why: gpu when the gpu profile's plan
    fits the GPUs, else cpu with enough memory (or when the memory is unknown), else offline."""
    if gpu_plan is not None and gpu_plan.fits:
        return Profile.gpu, "The gpu profile fits these GPUs (see the plan)."
    if gpu_plan is not None and gpu_plan.alternative is not None:
        return Profile.gpu, "The gpu profile fits these GPUs with CPU offload and smaller models (see the plan)."
    reason = "No CUDA GPU is visible" if not gpus else "The gpu profile does not fit these GPUs"
    if memory is None or memory >= CPU_PROFILE_MEMORY_GIB:
        return Profile.cpu, (
            f"{reason}; the cpu profile runs small real models on the CPU (`fabula models pull cpu`). "
            "The offline profile needs no download."
        )
    return Profile.offline, (
        f"{reason}, and the cpu profile wants about {CPU_PROFILE_MEMORY_GIB:.0f} GiB of memory ({memory:.1f} GiB here); "
        "the offline profile writes real words with SmolLM2 and needs no download."
    )


def _notes(gpus: list[GpuInfo], settings: Settings) -> list[str]:
    notes = []
    if len({gpu.name for gpu in gpus}) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        notes.append("These GPUs differ: set CUDA_DEVICE_ORDER=PCI_BUS_ID so cuda:N matches nvidia-smi and docker device ids.")
    for gpu in gpus:
        if gpu.free_gib is not None and gpu.total_gib - gpu.free_gib > 2.0:
            used = gpu.total_gib - gpu.free_gib
            notes.append(f"GPU {gpu.index} has {used:.1f} GiB in use by other processes; the plan counts the whole GPU.")
    if settings.llm_base_url:
        notes.append(f"The LLM is served at {settings.llm_base_url} (FABULA_LLM_BASE_URL), so the plan leaves it out.")
    return notes


def _torch_versions() -> tuple[str | None, str | None]:
    try:
        import torch
    except ImportError:
        return None, None
    return torch.__version__, torch.version.cuda


def _driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        answer = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip().splitlines()[0] if answer.stdout.strip() else None


def memory_gib() -> float | None:
    """This machine's memory, None where the platform does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _disks(settings: Settings) -> list[DiskSpace]:
    from huggingface_hub import constants

    places = [
        ("Hugging Face cache (HF_HOME)", Path(constants.HF_HUB_CACHE)),
        ("Fabula cache (FABULA_CACHE_DIR)", settings.cache_dir),
        ("Fabula data (FABULA_DATA_DIR)", settings.data_dir),
    ]
    disks = []
    for label, path in places:
        existing = next((parent for parent in [path, *path.parents] if parent.exists()), None)
        if existing is None:
            continue
        usage = shutil.disk_usage(existing)
        disks.append(
            DiskSpace(label=label, path=str(path), free_gb=round(usage.free / 1e9, 1), total_gb=round(usage.total / 1e9, 1))
        )
    return disks

"""`fabula`: serve one service, bring the whole studio up, make a book from the command line, manage models."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_setup.profile_choice import AUTO, PROFILE_CHOICES
from services.registry import SERVICE_NAMES
from shared.errors import FabulaError
from shared.logs import configure_logging, server_log_options
from shared.settings import Profile, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from webapp.jobs.models import JobRecord
    from webapp.jobs.stories import Stories

PROFILE_HELP = "tiny, offline, cpu, gpu, or auto: the best one whose weights are on this machine (the default, unless FABULA_PROFILE is set)."


def _settings(args: argparse.Namespace, *, fetch: bool = False) -> Settings:
    """The settings a command runs with. A command that takes `--profile` says first which profile it runs, and why;
    with `fetch` (`fabula up`), an auto start on a machine without real weights may fetch them first."""
    if not hasattr(args, "profile"):
        return Settings()
    from gpu_setup.profile_choice import choose_profile

    choice = choose_profile(args.profile, Settings())
    if fetch and choice.automatic:
        from gpu_setup.first_run import first_run_profile

        choice = first_run_profile(choice, Settings(), pull=_pull_in_child, say=lambda line: print(line, flush=True))
    elif not getattr(args, "profile_said", False):
        print(choice.line(), flush=True)
    return Settings(profile=choice.profile)


def _pull_in_child(profile: Profile, environment: Mapping[str, str]) -> bool:
    """`fabula models pull PROFILE` in a child process (this one keeps the hub client switched off); True when it
    finished. Its lines are passed on but its own `Profile:` line, which would repeat ours; its progress bars go
    straight to the terminal."""
    import subprocess

    command = [sys.executable, "-m", "webapp.cli", "models", "pull", profile.value]
    child = subprocess.Popen(command, env=dict(environment), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for number, line in enumerate(child.stdout):
            if number or not line.startswith("Profile: "):
                print(line, end="", flush=True)
        return child.wait() == 0
    except KeyboardInterrupt:
        print("The download stopped: the files it finished are kept, and `fabula up` fetches the rest next time.", flush=True)
        raise
    finally:
        if child.poll() is None:  # Ctrl-C reached the child too; give it a moment to clean up, then end it
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _fail(message: str, code: int = 2) -> int:
    print(f"fabula: {message}", file=sys.stderr)
    return code


def _device_ok(device: str) -> str:
    if device != "cpu" and not device.startswith("cuda"):
        raise argparse.ArgumentTypeError("--device is cpu, cuda or cuda:N")
    return device


# ---- serve ------------------------------------------------------------------------------------------------
# Set before the libraries are imported (they read these once), and inherited by the services `fabula up` starts:
# no usage reports; unless `--verbose`, no progress bars and no library advice either (`configure_logging` sets the
# libraries' log levels). A variable already set wins.
QUIET_START = {
    "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
}
KEPT_WHEN_VERBOSE = ("GRADIO_ANALYTICS_ENABLED",)


def _quiet_start() -> None:
    from shared.logs import verbose_wanted

    verbose = verbose_wanted()
    for name, value in QUIET_START.items():
        if not verbose or name in KEPT_WHEN_VERBOSE:
            os.environ.setdefault(name, value)


def cmd_serve(args: argparse.Namespace) -> int:
    _quiet_start()
    import uvicorn

    settings = _settings(args)
    configure_logging(settings.log_level)
    from webapp.app import KEEP_ALIVE_S, server_options

    if args.service == "web":
        from webapp.app import create_web_app

        from webapp.public_address import public_address

        from webapp.jobs.database import open_database

        open_database(settings).dispose()  # a damaged job database is named now, in plain words, not at the first request
        port = args.port or settings.web_port
        app = create_web_app(settings, host=args.host, port=port)
        options = server_options(settings)
        address = public_address(settings.public_url, args.host, port)
        print(f"Books' QR codes open {address.url}/read/…" + (f"\nNote: {address.warning}" if address.warning else ""), flush=True)
    else:
        from webapp.launcher import SERVICES, check_models, create_service_app

        check_models(args.service, settings)
        app = create_service_app(args.service, settings, args.device)
        port = args.port or SERVICES[args.service].port
        options = {"proxy_headers": False, "timeout_keep_alive": KEEP_ALIVE_S}
    uvicorn.run(app, host=args.host, port=port, **server_log_options(), **options)
    return 0


# ---- up ---------------------------------------------------------------------------------------------------
def _devices_for(settings: Settings) -> dict[str, str]:
    if settings.profile != Profile.gpu:
        return {name: "cpu" for name in SERVICE_NAMES}
    from gpu_setup.assignment import plan_for_settings
    from gpu_setup.doctor import collect_gpus

    assignment = plan_for_settings(collect_gpus(), settings)
    if assignment.fits and assignment.changes:
        raise FabulaError("The gpu profile fits these GPUs only with other settings:\n" + assignment.describe())
    return assignment.devices()


def cmd_up(args: argparse.Namespace) -> int:
    _quiet_start()
    import uvicorn

    from webapp.app import create_web_app, server_options
    from webapp.jobs.database import open_database
    from webapp.launcher import ServiceProcesses, check_port_free
    from webapp.public_address import public_address

    settings = _settings(args, fetch=args.fetch)
    configure_logging(settings.log_level)
    port = args.port or settings.web_port
    # Every port is checked before anything starts: `fabula up` never adopts a service (or a web app) it did not start.
    check_port_free(args.host, port, what="the web app", setting="--port (or FABULA_WEB_PORT)")
    open_database(settings).dispose()  # a damaged job database is named now, before any service starts
    devices = _devices_for(settings)
    print(f"Starting the caption, illustrate, llm and narrate services ({settings.profile.value} profile: {devices})…", flush=True)
    processes = ServiceProcesses(settings, devices=devices, host="127.0.0.1")
    started = time.perf_counter()
    settings = processes.start()
    try:
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        app = create_web_app(settings, host=args.host, port=port, start_services=False)
        print(f"Services ready in {time.perf_counter() - started:.1f} s.", flush=True)
        print(f"Fabula is running at http://{shown_host}:{port}/  (API docs: /docs; Ctrl-C stops everything)", flush=True)
        address = public_address(settings.public_url, args.host, port)
        print(f"Books' QR codes open {address.url}/read/…" + (f"\nNote: {address.warning}" if address.warning else ""), flush=True)
        uvicorn.run(app, host=args.host, port=port, **server_log_options(), **server_options(settings))
    finally:
        processes.stop()
    return 0


# ---- story ------------------------------------------------------------------------------------------------
# The flag that sets each story option, where it is not the option's own name.
STORY_FLAGS = {"language": "--lang", "character_names": "--names", "print": "--print"}


def cmd_story(args: argparse.Namespace) -> int:
    from shared.photo_safety import check_photo
    from webapp.story.forms import StoryForm

    photo = Path(args.photo)
    if not photo.is_file():
        return _fail(f"no such photo: {photo}")
    settings = _settings(args)
    configure_logging("WARNING")
    try:
        check_photo(photo.read_bytes(), settings)  # a file Fabula can read, and safe for all ages
        form = StoryForm(
            pages=args.pages, language=args.lang, style=args.style, audience=args.audience, tone=args.tone, idea=args.idea,
            character_names=args.names, seed=args.seed, narrate=args.narrate, reference_strength=args.reference_strength,
            print=args.print_size, crop_marks=args.crop_marks,
        )
        options = form.options(max_pages=settings.max_book_pages, blocked_words=tuple(settings.blocked_words))
    except FabulaError as exc:  # before any service starts: a photo Fabula cannot read, an option out of range
        if exc.param == "photo":
            return _fail(exc.message.replace("The uploaded file `photo`", str(photo)).replace("`photo`", str(photo)))
        flag = STORY_FLAGS.get(exc.param or "", f"--{(exc.param or 'option').replace('_', '-')}")
        return _fail(exc.message.replace(f"`{exc.param}`", flag) if exc.param else exc.message)
    return asyncio.run(_story(settings, photo.read_bytes(), options, Path(args.output)))


async def _story(settings: Settings, photo: bytes, options: object, output: Path) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from webapp.jobs.following import follow_events
    from webapp.jobs.models import JobStatus
    from webapp.launcher import InProcessServices
    from webapp.workshop import build_workshop

    services = None
    if settings.profile.self_contained:
        services = InProcessServices(settings)
        settings = await asyncio.to_thread(services.start)
    public_url = settings.public_url or f"http://{settings.web_host}:{settings.web_port}"
    workshop = build_workshop(settings, public_url=public_url)
    try:
        if services is None:
            down = await workshop.services_down()
            if down:
                return _fail(
                    f"the {' and '.join(down)} service{'s are' if len(down) > 1 else ' is'} not running or not ready "
                    f"(FABULA_CAPTION_URL / FABULA_ILLUSTRATE_URL). Start them with `fabula up --profile {settings.profile.value}`."
                )
        started = time.perf_counter()
        stories = workshop.stories
        record = stories.submit(photo, options)  # type: ignore[arg-type]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            bar = progress.add_task("Queued", total=record.pages_total)
            async for event in follow_events(stories, record.id):
                progress.update(bar, description=f"{event.stage.value}: {event.message}", completed=event.pages_done, total=event.pages_total)
        record = await stories.wait(record.id)
        if record.status != JobStatus.done:
            return _fail(f"the book could not be made: {record.error} (job {record.id}; `fabula resume {record.id}` continues it)", 1)
        _save_book(stories, record, output, time.perf_counter() - started)
        print(f"Reader link (served by `fabula serve web`): {public_url.rstrip('/')}/read/{record.book_token}")
        return 0
    finally:
        await workshop.aclose()
        if services:
            services.stop()


def _save_book(stories: Stories, record: JobRecord, output: Path, seconds: float) -> None:
    """Copy the book's formats next to `output` and say what the reader should know about it (a print book: its check)."""
    from webapp.jobs.book_assembly import saved_print_check
    from webapp.jobs.progress import Artifacts

    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(stories.file(record.id, Artifacts.PDF) or "", output)
    print(f"Book written to {output} ({output.stat().st_size:,} bytes) in {seconds:.1f} s")
    for name, suffix, what in ((Artifacts.EPUB, ".epub", "EPUB (reads along)"), (Artifacts.AUDIOBOOK, ".m4b", "Audiobook")):
        if (path := stories.file(record.id, name)) is not None:
            shutil.copyfile(path, output.with_suffix(suffix))
            print(f"{what}: {output.with_suffix(suffix)}")
    saved = stories.progress(record.id)
    if saved.language_note:
        print(saved.language_note)
    if saved.narration_note:
        print(f"Not read aloud: {saved.narration_note}")
    if (check := saved_print_check(record.id, stories.artifacts)) is not None:
        print("Print check:\n  " + "\n  ".join(check.lines()))
    print("Time per stage: " + ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in saved.stage_seconds.items()))


def cmd_resume(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging("WARNING")
    return asyncio.run(_resume(settings, args.job_id))


async def _resume(settings: Settings, job_id: str) -> int:
    from webapp.launcher import InProcessServices
    from webapp.workshop import build_workshop

    services = None
    if settings.profile.self_contained:
        services = InProcessServices(settings)
        settings = await asyncio.to_thread(services.start)
    workshop = build_workshop(settings, public_url=settings.public_url or f"http://{settings.web_host}:{settings.web_port}")
    try:
        workshop.stories.resume(job_id)
        record = await workshop.stories.wait(job_id)
        print(f"{record.id}: {record.status.value}" + (f" — {record.error}" if record.error else ""))
        return 0 if record.status.value == "done" else 1
    finally:
        await workshop.aclose()
        if services:
            services.stop()


# ---- models and doctor --------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from gpu_setup.models import model_status, pull_models
    from gpu_setup.profile_choice import ProfileChoice, choose_profile, machine_fit

    requested = args.target or args.profile
    if args.action == "pull":
        # A pull fetches: auto means the profile that fits this machine, and no profile at all means cpu.
        if requested == AUTO:
            choice = ProfileChoice(profile=machine_fit(Settings())[0], reason="auto: the profile that fits this machine")
        elif requested is None:
            choice = ProfileChoice(profile=Profile.cpu, reason="what `fabula models pull` fetches when given no profile; name gpu for GPUs")
        else:
            choice = choose_profile(requested, Settings())
        print(choice.line(), flush=True)
        settings = Settings(profile=choice.profile)
        pull_models(settings.profile, settings)
        return 0
    # `fabula models status cpu` asks about the cpu profile; without one, about the profile `fabula up` would run.
    settings = _settings(argparse.Namespace(profile=requested))
    print(f"Models for the {settings.profile.value} profile:")
    for status in model_status(settings):
        print("  " + status.describe())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from gpu_setup.doctor import doctor_report, format_report, launch_environment

    # The shell's own environment: `main` switched the hub client off for this process, not for `fabula models pull`.
    from webapp.jobs.database import health_line

    print(format_report(doctor_report(_settings(args), environment=launch_environment(), job_database=health_line)))
    return 0


# ---- beyond one machine ---------------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from webapp.worker import run_worker

    settings = _settings(args)
    configure_logging(settings.log_level)
    if not settings.broker_url:
        return _fail("`fabula worker` runs books from a broker: set FABULA_BROKER_URL (e.g. redis://127.0.0.1:6379/0) and FABULA_DATABASE_URL.")
    return run_worker(settings, concurrency=args.concurrency)


def cmd_db(args: argparse.Namespace) -> int:
    from webapp.jobs.database import describe, database_url, open_database

    settings = _settings(args)
    open_database(settings).dispose()  # checks the database and applies every migration not applied yet
    print(f"The job database {describe(database_url(settings))} is up to date.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fabula", description="One photo in; an illustrated, translated storybook out.")
    parser.add_argument(
        "--log-format", choices=["auto", "human", "json"],
        help="Log lines: human on a terminal, JSON otherwise (auto, the default; FABULA_LOG_FORMAT), or always one of them.",
    )
    parser.add_argument(
        "--verbose", action="store_true",
        help="Also the libraries' own log lines, advice and progress bars (FABULA_VERBOSE=1); without it, only their errors and real warnings.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Start one service (caption, illustrate, llm, narrate) or the web app.")
    serve.add_argument("service", choices=[*SERVICE_NAMES, "web"])
    serve.add_argument("--profile", choices=PROFILE_CHOICES, help=PROFILE_HELP)
    serve.add_argument("--device", default="cpu", type=_device_ok, help="cpu, cuda or cuda:N (fp16/bf16 on CUDA, fp32 on CPU).")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int)
    # `fabula up` starts each service with this: it has said which profile runs, so the services do not repeat it.
    serve.add_argument("--profile-said", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    up = commands.add_parser("up", help=f"Start the {', '.join(SERVICE_NAMES[:-1])} and {SERVICE_NAMES[-1]} services and the web app; Ctrl-C stops all.")
    up.add_argument(
        "--profile", choices=PROFILE_CHOICES,
        help=PROFILE_HELP + " On a machine without real weights, auto first fetches the profile that fits it when the model hub answers.",
    )
    up.add_argument("--no-fetch", dest="fetch", action="store_false", help="Never fetch weights first: auto runs with what is here.")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int)
    up.set_defaults(handler=cmd_up)

    from webapp.story.options import Audience
    from webapp.story.styles import STYLES

    story = commands.add_parser("story", help="Make a book from a photo on the command line.")
    story.add_argument("photo", help="The photo the story is about (JPEG, PNG, WebP or GIF).")
    story.add_argument("--pages", type=int, default=8, help="Story pages, 1–24 (default: 8).")
    story.add_argument("--lang", default="en", help="Language code or name, e.g. ko or Korean (default: en).")
    story.add_argument("--style", default="watercolor", choices=[style.id for style in STYLES], help="The pictures' style (default: watercolor).")
    story.add_argument(
        "--audience", default="children", choices=[audience.value for audience in Audience], help="Who the book is for (default: children)."
    )
    story.add_argument("--tone", default="warm and whimsical", help="Tone or genre (default: warm and whimsical).")
    story.add_argument("--idea", help="An idea or plot hint.")
    story.add_argument("--names", help="Character names, comma-separated.")
    story.add_argument("--seed", type=int)
    story.add_argument("--narrate", action=argparse.BooleanOptionalAction, default=True, help="Read the book aloud (default: on).")
    story.add_argument("--reference-strength", type=float, help="0–1: how strongly the pictures follow the photo; 0 turns it off.")
    from webapp.book.print_sizes import PrintSize

    story.add_argument(
        "--print", dest="print_size", choices=[size.value for size in PrintSize], default=PrintSize.screen.value,
        help="The PDF's page size: screen (default), or a print size with bleed and 300-dpi pictures.",
    )
    story.add_argument("--crop-marks", action="store_true", help="Print sizes: crop marks around each page (default off).")
    story.add_argument("--profile", choices=PROFILE_CHOICES, help="Which models make the book: " + PROFILE_HELP)
    story.add_argument("-o", "--output", default="book.pdf", help="Where the PDF goes; the EPUB and audiobook go beside it (default: book.pdf).")
    story.set_defaults(handler=cmd_story)

    resume = commands.add_parser("resume", help="Continue an unfinished book from its last saved step.")
    resume.add_argument("job_id")
    resume.add_argument("--profile", choices=PROFILE_CHOICES, help=PROFILE_HELP)
    resume.set_defaults(handler=cmd_resume)

    models = commands.add_parser("models", help="Download real weights (pull) or list what is here (status).")
    models.add_argument("action", choices=["pull", "status"])
    models.add_argument(
        "target", nargs="?", choices=PROFILE_CHOICES,
        help="The profile to pull or list. pull: cpu when not given, auto: the one that fits this machine; status: the one `fabula up` runs.",
    )
    models.add_argument("--profile", choices=PROFILE_CHOICES, help="The same as the target.")
    models.set_defaults(handler=cmd_models)

    worker = commands.add_parser("worker", help="Run books from the broker (FABULA_BROKER_URL) with Celery; start as many as you like.")
    worker.add_argument("--profile", choices=PROFILE_CHOICES, help=PROFILE_HELP)
    worker.add_argument("--concurrency", type=int, default=2, help="Books this worker makes at once (default 2).")
    worker.set_defaults(handler=cmd_worker)

    database = commands.add_parser("db", help="The job database: `fabula db upgrade` applies its migrations (Alembic).")
    database.add_argument("action", choices=["upgrade"])
    database.set_defaults(handler=cmd_db)

    doctor = commands.add_parser("doctor", help="GPUs, free memory, and which profile and GPU assignment fit.")
    doctor.add_argument("--profile", choices=PROFILE_CHOICES, help="The profile to report on: " + PROFILE_HELP)
    doctor.set_defaults(handler=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log_format:
        os.environ["FABULA_LOG_FORMAT"] = args.log_format  # the services `fabula up` starts log the same way
    if args.verbose:
        os.environ["FABULA_VERBOSE"] = "1"  # and are as verbose
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command != "models":
        # Run time never reaches a model hub; only `fabula models pull` downloads (`fabula up`'s first run runs it as a child).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return args.handler(args)
    except FabulaError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

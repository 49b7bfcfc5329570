"""The espeak-ng voice: the Debian program, run once per request, text on its standard input.

No weights, no network, about fifty languages. The text never reaches a command line or a shell: it is written
to the program's standard input as UTF-8, and the WAV it writes to standard output is read back.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

from services.narrate.audio import AudioFailed, Pcm, pcm_from_wav, to_canonical
from services.narrate.voices import ENGINE, LICENCE, Voice, VoiceCatalogue
from shared.errors import ModelUnavailable
from shared.model_holder import EngineInfo

logger = logging.getLogger(__name__)

# espeak-ng's own default pace is speed 1.0; it speaks no slower than 80 words a minute, so slower speeds are
# reached by stretching its audio.
DEFAULT_WORDS_PER_MINUTE = 175
MIN_WORDS_PER_MINUTE = 80
MAX_WORDS_PER_MINUTE = 1000
SYNTHESIS_TIMEOUT_S = 120.0
INSTALL_HINT = "install the Debian package espeak-ng (apt-get install espeak-ng)"


def find_espeak() -> str:
    """The espeak-ng program's path; raises `ModelUnavailable` saying what to install."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise ModelUnavailable(f"espeak-ng is not installed on this machine; {INSTALL_HINT}.", param="FABULA_NARRATE_MODEL")
    return executable


class EspeakEngine:
    def __init__(self, executable: str, *, version: str, catalogue: VoiceCatalogue) -> None:
        self.executable = executable
        self.version = version
        self.catalogue = catalogue
        self.model_id = ENGINE
        self.licence = LICENCE

    @classmethod
    def load(cls, executable: str) -> EspeakEngine:
        """Ask the program which version it is and which voices and variants it has."""
        banner = _run_listing(executable, ["--version"]).strip()
        found = re.search(r"text-to-speech:\s*(\S+)", banner)
        version = found.group(1) if found else banner[:40]
        locales = {fields[1] for fields in _voice_rows(_run_listing(executable, ["--voices"])) if not fields[4].startswith("mb/")}
        variants = {fields[4].removeprefix("!v/") for fields in _voice_rows(_run_listing(executable, ["--voices=variant"]))}
        if not locales:
            raise ModelUnavailable(f"espeak-ng at {executable} lists no voices; {INSTALL_HINT} with its data.")
        return cls(executable, version=version, catalogue=VoiceCatalogue(locales, variants))

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.model_id, device="cpu", dtype="int16",
            extra={"version": self.version, "locales": len(self.catalogue.installed_locales), "licence": self.licence},
        )

    def speak(self, text: str, voice: Voice, *, speed: float) -> Pcm:
        """24 kHz audio of `text` read by `voice`; `speed` 1.0 is espeak-ng's default pace."""
        words_per_minute = DEFAULT_WORDS_PER_MINUTE * speed
        spoken = min(MAX_WORDS_PER_MINUTE, max(MIN_WORDS_PER_MINUTE, round(words_per_minute)))
        command = [self.executable, "-v", voice.id, "-s", str(spoken), "-b", "1", "--stdout"]
        try:
            completed = subprocess.run(
                command, input=text.encode("utf-8"), capture_output=True, timeout=SYNTHESIS_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise AudioFailed(f"espeak-ng took longer than {SYNTHESIS_TIMEOUT_S:.0f} s to read the text.") from None
        if completed.returncode != 0:
            detail = completed.stderr.decode("utf-8", "replace").strip()[-2000:]
            logger.error("espeak-ng failed", extra={"fields": {"returncode": completed.returncode, "voice": voice.id, "stderr": detail}})
            raise AudioFailed(f"espeak-ng failed (exit status {completed.returncode}); the narrate service logged why.")
        return to_canonical(pcm_from_wav(completed.stdout), tempo=words_per_minute / spoken)


def _run_listing(executable: str, arguments: list[str]) -> str:
    try:
        completed = subprocess.run([executable, *arguments], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelUnavailable(f"espeak-ng at {executable} does not run ({type(exc).__name__}); {INSTALL_HINT}.") from None
    if completed.returncode != 0:
        raise ModelUnavailable(
            f"`espeak-ng {' '.join(arguments)}` failed: {completed.stderr.decode('utf-8', 'replace').strip()[:200]}"
        )
    return completed.stdout.decode("utf-8", "replace")


def _voice_rows(listing: str) -> list[list[str]]:
    """`espeak-ng --voices` rows as columns: priority, language, age/gender, name, file, other languages."""
    rows = [line.split() for line in listing.splitlines()[1:]]
    return [fields for fields in rows if len(fields) >= 5]

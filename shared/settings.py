"""All of Fabula's settings, read from the environment (prefix `FABULA_`) or a `.env` file.

Every limit that a request can hit is a named setting here, so an error can name it.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.blocked_words import DEFAULT_BLOCKED_WORDS
from shared.open_nsfw import DEFAULT_SAFETY_THRESHOLD


class Profile(str, Enum):
    tiny = "tiny"
    offline = "offline"
    cpu = "cpu"
    gpu = "gpu"

    @property
    def self_contained(self) -> bool:
        """Needs no downloaded weights: its models are built locally or ship inside a Python package, so the
        web app and `fabula story` can start its services themselves."""
        return self in (Profile.tiny, Profile.offline)

    @property
    def tiny_pictures(self) -> bool:
        """Paints with the tiny random SDXL (the offline profile restyles the reader's photo instead)."""
        return self == Profile.tiny


# The model services and the port each listens on by default: the one place these numbers are written. The
# launcher, `fabula serve` and the default of each service's URL setting (`<name>_url`) all read it.
SERVICE_PORTS: dict[str, int] = {"caption": 8101, "illustrate": 8102, "llm": 8103, "narrate": 8104}


def local_service_url(name: str) -> str:
    """Where the service called `name` answers on this machine by default."""
    return f"http://127.0.0.1:{SERVICE_PORTS[name]}"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "fabula"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "fabula"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FABULA_", env_file=".env", extra="ignore")

    profile: Profile = Profile.tiny
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Tiny models and other caches.")
    data_dir: Path = Field(default_factory=_default_data_dir, description="Job database and book artifacts.")
    log_level: str = "INFO"

    # Security
    api_key: SecretStr | None = Field(default=None, description="When set, every API call needs `Authorization: Bearer <key>`.")

    # Where the services live (the web app's view of them)
    caption_url: str = local_service_url("caption")
    illustrate_url: str = local_service_url("illustrate")
    llm_url: str = local_service_url("llm")
    narrate_url: str = local_service_url("narrate")
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL; default `<llm_url>/v1`. Point at vLLM or a hosted API.")
    llm_api_key: SecretStr | None = None
    public_url: str | None = Field(default=None, description="Absolute base URL printed in QR codes; default the web app's own address.")

    # Model ids (None: the profile's default; a local folder path also works)
    caption_model: str | None = None
    illustrate_model: str | None = None
    refiner_model: str | None = None
    llm_model: str | None = None
    narrate_model: str | None = Field(default=None, description="The speech engine: `espeak-ng` (offline, no weights, every profile).")

    # Upload and request limits
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_prompt_chars: int = 4000
    max_caption_tokens: int = 512
    max_images_per_request: int = 8
    max_inference_steps: int = 150
    min_image_size: int = 64
    max_image_size: int = 2048
    max_chat_tokens: int = 8192
    # The text engine
    llm_engine: str = Field(
        default="auto", description="auto (GGUF files on llama.cpp, folders on transformers), `llama.cpp` or `transformers`."
    )
    llm_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "llama.cpp compute threads, fixed; default: chosen as it runs, between one and all usable cores, by timing its own passes "
            "(its threads spin while waiting, so fewer is faster on a busy machine)."
        ),
    )
    llm_parallel: int = Field(default=8, ge=1, le=64, description="llama.cpp: how many requests are decoded together in one forward pass.")
    llm_context_tokens: int = Field(
        default=16384,
        ge=256,
        le=1_048_576,
        description="llama.cpp: KV cells shared by the parallel requests; one request's context is this or the model's, whichever is smaller.",
    )
    max_chat_messages_chars: int = 100_000
    narrator_voice: str = Field(default="fable", description="The voice books are read in: an OpenAI voice name or a voice id from GET /v1/audio/voices.")
    max_speech_chars: int = Field(default=4096, description="The longest `input` one speech request may have (OpenAI's own limit).")
    max_speech_seconds: float = Field(
        default=300.0, gt=0, description="The longest audio one speech request may make, in seconds (estimated before speaking, checked after)."
    )
    max_pixel_steps: int | None = Field(
        default=None,
        description="What one picture request may cost (width × height × steps × n); default per profile, so one request cannot block every book behind it.",
    )
    max_upscale_pixels: int = Field(
        default=4096 * 4096,
        ge=64 * 64,
        description="The largest picture one upscale request may have the upscaler make (width × height), so one request cannot hold the model for minutes.",
    )
    upscale_model: str | None = Field(
        default=None,
        description=(
            "The print upscaler: a hub file `owner/repo/file.pth` or a local .pth/.safetensors file spandrel loads (Real-ESRGAN class), "
            "`lanczos` (a classical filter, no weights) or `tiny`; default per profile (tiny: tiny stand-in, offline: lanczos, cpu/gpu: Real-ESRGAN x4)."
        ),
    )

    # Captioning
    blocked_words: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_WORDS),
        description=(
            "Words that never reach a book (comma-separated or a JSON list; replaces the default list, `[]` turns it off): "
            "a reader's field with one is refused, a generated text with one is written again, then the word removed."
        ),
    )

    audience_words: dict[str, list[str]] | None = Field(
        default=None,
        description=(
            "Words kept out of a book for its audience, as JSON from audience (young-children, children, preteens, teens, adults) "
            "to a list; an audience named here replaces its default list (webapp/story/audience_words.py)."
        ),
    )

    # Illustration
    refiner_start: float = Field(default=0.8, ge=0.0, le=1.0)
    default_inference_steps: int | None = None
    default_guidance_scale: float | None = None
    batch_window_ms: int = 25
    max_batch_size: int = 8

    # Likeness and picture safety
    reference_strength: float = Field(
        default=0.6, ge=0.0, le=1.0, description="How strongly pages follow the photo (IP-Adapter scale); 0 turns the reference off."
    )
    safety_checker: bool = Field(
        default=True, description="Every picture passes the image safety classifier; a flagged one is repainted, then replaced."
    )
    likeness_model: str = Field(
        default="h94/IP-Adapter", description="The SDXL IP-Adapter (Apache-2.0) that carries the photo's likeness; the tiny profile builds its own."
    )
    safety_model: str = Field(
        default="Falconsai/nsfw_image_detection", description="The image safety classifier (Apache-2.0); the tiny profile builds its own."
    )
    max_safety_repaints: int = Field(
        default=2, ge=0, le=5, description="Repaints with another seed before a flagged picture is replaced by a calm placeholder."
    )
    safety_threshold: float = Field(
        default=DEFAULT_SAFETY_THRESHOLD, gt=0.0, le=1.0,
        description=(
            "The open_nsfw score (0–1) from which an uploaded photo is refused and a picture is flagged (shared/open_nsfw.py says why 0.8); "
            "Falconsai's and the tiny classifiers flag by their labels instead."
        ),
    )
    photo_check: bool = Field(
        default=True, description="Every uploaded photo and logo passes the open_nsfw image safety check before a book is started; a flagged one is refused."
    )

    # Performance switches (gpu profile)
    model_dtype: str | None = Field(default=None, description="auto, float32, bfloat16 or float16; default fp32 on CPU, bf16/fp16 on GPUs by capability.")
    torch_compile: bool = False
    channels_last: bool = True
    fuse_qkv: bool = True
    attention: str = "sdpa"
    offload: bool = False

    # Beyond one machine (unset: the one-machine defaults)
    database_url: str | None = Field(
        default=None,
        description="The job database: default SQLite in FABULA_DATA_DIR; `postgresql+psycopg://user:pass@host/db` for replicas and workers.",
    )
    broker_url: str | None = Field(
        default=None, description="Unset: books run inside the web process. `redis://host:6379/0`: books go through Celery to `fabula worker`s."
    )
    broker_visibility_timeout_s: float = Field(
        default=600.0, gt=0, description="A book whose worker died is given to another worker after this many seconds (Redis visibility timeout)."
    )
    job_lease_s: float = Field(
        default=60.0, gt=0, description="How long a worker's hold on a running book lasts without renewal (it renews every third of it)."
    )
    worker_health_port: int = Field(
        default=8110, ge=0, le=65535,
        description="`fabula worker` answers /healthz, /readyz and /metrics on this port; 0, or a port another worker holds: any free one (logged).",
    )

    # Web app
    web_host: str = "127.0.0.1"
    web_port: int = 7860
    forwarded_allow_ips: str = Field(
        default="",
        description=(
            "The proxies (IPs or networks, comma-separated; `*` for any) whose `X-Forwarded-For` names the client; "
            "default none: the peer's own address counts, so no caller can pose as another."
        ),
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Host names the web app answers to besides loopback, its LAN address and FABULA_PUBLIC_URL's host "
            "(comma-separated; `*` for any); other `Host` headers get a 400, which stops DNS rebinding."
        ),
    )
    max_queued_jobs: int = 16
    rate_limit_per_minute: int = 30
    book_link_ttl_hours: float | None = None
    max_book_pages: int = Field(default=24, ge=1, le=24)
    book_image_size: int | None = Field(default=None, description="Picture size in pixels; default 64 (tiny), 512 (cpu), 1024 (gpu).")
    writer_attempts: int = Field(
        default=3, ge=1, le=6, description="How often the writer asks for a piece that breaks the rules before it uses a safe fallback."
    )
    service_timeout_s: float = 600.0
    service_retries: int = 3

    @field_validator("blocked_words", "allowed_hosts", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [word.strip() for word in text.split(",") if word.strip()]
        return value

    @property
    def resolved_llm_base_url(self) -> str:
        return self.llm_base_url or self.llm_url.rstrip("/") + "/v1"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()

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
        """Paints with the tiny random SDXL (no real diffusion weights can be had offline)."""
        return self in (Profile.tiny, Profile.offline)


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
    caption_url: str = "http://127.0.0.1:8101"
    illustrate_url: str = "http://127.0.0.1:8102"
    llm_url: str = "http://127.0.0.1:8103"
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL; default `<llm_url>/v1`. Point at vLLM or a hosted API.")
    llm_api_key: SecretStr | None = None
    public_url: str | None = Field(default=None, description="Absolute base URL printed in QR codes; default the web app's own address.")

    # Model ids (None: the profile's default; a local folder path also works)
    caption_model: str | None = None
    illustrate_model: str | None = None
    refiner_model: str | None = None
    llm_model: str | None = None

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
    max_chat_messages_chars: int = 100_000

    # Captioning
    blocked_words: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Words that never reach a book: the caption model may not generate them, and a generated text with one is written again (comma-separated or a JSON list)."
    )

    # Illustration
    refiner_start: float = Field(default=0.8, ge=0.0, le=1.0)
    default_inference_steps: int | None = None
    default_guidance_scale: float | None = None
    batch_window_ms: int = 25
    max_batch_size: int = 8

    # Performance switches (gpu profile)
    torch_compile: bool = False
    channels_last: bool = True
    fuse_qkv: bool = True
    attention: str = "sdpa"
    offload: bool = False

    # Web app
    web_host: str = "127.0.0.1"
    web_port: int = 7860
    max_queued_jobs: int = 16
    rate_limit_per_minute: int = 30
    book_link_ttl_hours: float | None = None
    max_book_pages: int = 24
    book_image_size: int | None = Field(default=None, description="Picture size in pixels; default 64 (tiny), 512 (cpu), 1024 (gpu).")
    writer_attempts: int = Field(default=3, ge=1, le=6, description="How often the writer asks for a piece that breaks the rules before it uses a safe fallback.")
    service_timeout_s: float = 600.0
    service_retries: int = 3

    @field_validator("blocked_words", mode="before")
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

"""The narrate service's wire: OpenAI's speech request (plus `language`) and the voice listing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MIN_SPEED = 0.25
MAX_SPEED = 4.0


class VoiceReference(BaseModel):
    """OpenAI's object form of `voice`: `{"id": "..."}`."""

    id: str = Field(max_length=200)


class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech`. Fields OpenAI may add later are ignored rather than refused, as its clients send them."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        default=None, max_length=200,
        description="`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts` or the engine's id (`espeak-ng`); all are served by the loaded engine.",
    )
    input: str = Field(description="The text to read aloud; at most FABULA_MAX_SPEECH_CHARS characters.")
    voice: str | VoiceReference = Field(
        description="A voice id from GET /v1/audio/voices (`en-us+f3`) or an OpenAI voice name (`alloy`, `nova`, ...)."
    )
    response_format: str = Field(default="mp3", description="mp3, opus (Ogg), aac (ADTS), flac, wav, or pcm (24 kHz 16-bit mono, little-endian).")
    # Strict: a JSON number only (`true` and `" 4 "` are not speeds, though lax parsing would read them as 1 and 4).
    speed: float = Field(default=1.0, strict=True, allow_inf_nan=False, description=f"{MIN_SPEED} to {MAX_SPEED}; 1.0 is the voice's natural pace.")
    language: str = Field(default="en", max_length=35, description="A BCP-47 or ISO 639 tag: en, es, pt-BR, ko, ar, hi ...")
    instructions: str | None = Field(
        default=None, description="OpenAI's steering text for its newer models; espeak-ng reads text as written and does not use it."
    )
    stream_format: Literal["audio", "sse"] | None = Field(default=None, description="Only `audio`: the whole file in one answer.")

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceReference) else self.voice


class VoiceCard(BaseModel):
    id: str = Field(description="The value for `voice`, and what `X-Voice` names.")
    name: str
    language: str = Field(description="The language code the voice speaks (as in `language`).")
    locale: str = Field(description="The engine's own name of the language or accent (`en-gb`, `pt-br`).")
    gender: str | None = None
    engine: str
    licence: str
    aliases: list[str] = Field(default_factory=list, description="OpenAI voice names that speak with this voice in its language.")


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceCard]

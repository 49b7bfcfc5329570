"""Typed async clients for the caption and illustrate services, with timeouts and bounded retries.

Transient failures (connection refused, timeouts, 429, 502/503/504) are retried with exponential back-off; a
4xx from a service is the user's problem and comes back at once as `InvalidRequest` carrying the service's own
message, so the web app can show it in plain words.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import httpx
from pydantic import BaseModel, ConfigDict

from shared.errors import FabulaError, InvalidRequest, PayloadTooLarge, UpstreamError
from shared.logs import job_id_var, request_id_var
from shared.schemas import CaptionResponse, ImageGenerationRequest, ImageGenerationResponse

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2**attempt) * (0.75 + random.random() / 2)


class ClientOptions(TypedDict, total=False):
    """What every service client takes besides its URL (see `ServiceClient`)."""

    api_key: str | None
    timeout_s: float
    retry: RetryPolicy | None
    transport: httpx.AsyncBaseTransport | None


class RequestOptions(TypedDict, total=False):
    """The body or query of one service call, handed to httpx as they are."""

    json: Any
    data: dict[str, str]
    files: dict[str, tuple[str, bytes]]
    params: dict[str, str] | None


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/readyz", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        last_error: FabulaError | None = None
        for attempt in range(self.retry.attempts):
            headers = {key: value for key, value in (("X-Request-ID", request_id_var.get() or job_id_var.get()),) if value}
            try:
                response = await self._http.request(method, path, headers=headers, **options)
            except httpx.TimeoutException:
                last_error = UpstreamError(f"The {self.name} service at {self.base_url} did not answer in time.", transient=True)
            except httpx.TransportError as exc:
                last_error = UpstreamError(
                    f"The {self.name} service at {self.base_url} cannot be reached ({type(exc).__name__}). Is it running?",
                    transient=True,
                )
            else:
                if response.status_code < 400:
                    return response
                message, param = _error_message(response)
                if response.status_code not in TRANSIENT_STATUSES:
                    error_class = PayloadTooLarge if response.status_code == 413 else InvalidRequest
                    if response.status_code in (401, 403):
                        raise UpstreamError(f"The {self.name} service refused Fabula's API key: {message}")
                    raise error_class(message, param=param)
                last_error = UpstreamError(f"The {self.name} service failed: {message}", transient=True)
            if attempt + 1 < self.retry.attempts:
                delay = self.retry.delay(attempt)
                logger.warning(
                    "retrying service call",
                    extra={"fields": {"service": self.name, "attempt": attempt + 1, "delay_s": round(delay, 2), "error": last_error.message}},
                )
                await asyncio.sleep(delay)
        assert last_error is not None
        raise UpstreamError(f"{last_error.message} Gave up after {self.retry.attempts} attempts.", transient=True)


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        error = response.json()["error"]
        return str(error.get("message")), error.get("param")
    except Exception:  # noqa: BLE001 - a non-Fabula server may answer anything
        return f"HTTP {response.status_code}: {response.text[:200]}", None


class CaptionClient(ServiceClient):
    def __init__(self, base_url: str, **options: Unpack[ClientOptions]) -> None:
        super().__init__(base_url, name="caption", **options)

    async def caption(
        self, image: bytes, *, filename: str = "photo.jpg", prompt: str | None = None, max_new_tokens: int | None = None
    ) -> CaptionResponse:
        data: dict[str, str] = {}
        if prompt:
            data["prompt"] = prompt
        if max_new_tokens:
            data["max_new_tokens"] = str(max_new_tokens)
        response = await self._request("POST", "/v1/caption", files={"image": (filename, image)}, data=data)
        return CaptionResponse.model_validate(response.json())


class IllustrateClient(ServiceClient):
    def __init__(self, base_url: str, **options: Unpack[ClientOptions]) -> None:
        super().__init__(base_url, name="illustrate", **options)

    async def generate(self, request: ImageGenerationRequest) -> ImageGenerationResponse:
        response = await self._request("POST", "/v1/images/generations", json=request.model_dump(exclude_none=True))
        return ImageGenerationResponse.model_validate(response.json())

    async def upscale(self, image: bytes, *, size: str | None = None, scale: float | None = None, filename: str = "picture.png") -> ImageGenerationResponse:
        """Enlarge a picture for print to `size` (WIDTHxHEIGHT) or by `scale` (2 to 4); `data[0].b64_json` holds the PNG."""
        form = {"response_format": "b64_json"}
        if size is not None:
            form["size"] = size
        if scale is not None:
            form["scale"] = str(scale)
        response = await self._request("POST", "/v1/images/upscale", files={"image": (filename, image)}, data=form)
        return ImageGenerationResponse.model_validate(response.json())


@dataclass(frozen=True)
class SpeechResult:
    """One clip from the narrate service: the encoded audio, its length in seconds and the voice that spoke."""

    audio: bytes
    duration: float
    voice: str
    format: str


class SpeechVoice(BaseModel):
    """One entry of the narrate service's voice listing (fields it may add later are ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    language: str
    locale: str
    gender: str | None = None
    engine: str
    licence: str
    aliases: list[str] = []


class NarrateClient(ServiceClient):
    """The narrate service, in its OpenAI speech shape plus `language`; durations come from its headers."""

    def __init__(self, base_url: str, *, model: str | None = None, **options: Unpack[ClientOptions]) -> None:
        super().__init__(base_url, name="narrate", **options)
        self.model = model

    async def speech(
        self, text: str, *, voice: str, language: str, response_format: str = "wav", speed: float = 1.0
    ) -> SpeechResult:
        body: dict[str, object] = {"input": text, "voice": voice, "language": language, "response_format": response_format, "speed": speed}
        if self.model:
            body["model"] = self.model
        response = await self._request("POST", "/v1/audio/speech", json=body)
        try:
            duration = float(response.headers["X-Audio-Duration"])
        except (KeyError, ValueError):
            raise UpstreamError(f"The narrate service at {self.base_url} sent audio without a valid X-Audio-Duration header.") from None
        return SpeechResult(audio=response.content, duration=duration, voice=response.headers.get("X-Voice", voice), format=response_format)

    async def voices(self, language: str | None = None) -> list[SpeechVoice]:
        params = {"language": language} if language else None
        response = await self._request("GET", "/v1/audio/voices", params=params)
        return [SpeechVoice.model_validate(item) for item in response.json()["data"]]

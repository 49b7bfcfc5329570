"""The narrate service with the real espeak-ng and ffmpeg, over real HTTP on loopback.

Audio is checked by what a player would find: the container's magic bytes, the codec ffprobe names, and the
length of the decoded samples against the `X-Audio-Duration` header and the number of words read.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import SecretStr

from services.narrate.app import create_app, resolve_narrate_model, synthesis_slots
from services.narrate.audio import SAMPLE_RATE, pcm_from_wav
from services.narrate.languages import find_speech_language
from services.narrate.text import speakable_text
from services.narrate.voices import OPENAI_VOICES
from shared.clients import NarrateClient, RetryPolicy, SpeechResult
from shared.errors import InvalidRequest, ModelUnavailable, UpstreamError
from shared.server_thread import ServerThread, free_port
from shared.settings import Settings
from tests.conftest import metric_value
from webapp.story.languages import LANGUAGES

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="needs the Debian packages espeak-ng and ffmpeg (scripts/install-system-deps.sh)",
)

SENTENCE = "The little fox ran across the snowy field to find her friends."
WORDS = len(SENTENCE.split())
CODECS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}


@contextmanager
def narrate_server(settings: Settings) -> Iterator[str]:
    app = create_app(settings)
    with ServerThread(app) as server:
        app.state.holder.wait(timeout=30)
        yield server.url


@pytest.fixture(scope="module")
def narrate_url(tiny_settings: Settings) -> Iterator[str]:
    with narrate_server(tiny_settings) as url:
        yield url


@pytest.fixture(scope="module")
def speech_api(narrate_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=narrate_url + "/v1", api_key="not-checked", max_retries=0)


def decoded_seconds(audio: bytes, audio_format: str) -> float:
    """Decode with ffmpeg to 24 kHz mono samples and measure them (containers written to a pipe carry no length)."""
    if audio_format == "pcm":
        return len(audio) / (2 * SAMPLE_RATE)
    samples = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
         "-ar", str(SAMPLE_RATE), "pipe:1"],
        input=audio, capture_output=True, check=True, timeout=60,
    ).stdout
    return len(samples) / (2 * SAMPLE_RATE)


def codec_of(audio: bytes) -> str:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", "-i", "pipe:0"],
        input=audio, capture_output=True, check=True, timeout=60,
    )
    return json.loads(probe.stdout)["streams"][0]["codec_name"]


def has_magic(audio: bytes, audio_format: str) -> bool:
    return {
        "mp3": audio[:3] == b"ID3" or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0),
        "opus": audio[:4] == b"OggS" and b"OpusHead" in audio[:64],
        "aac": audio[0] == 0xFF and audio[1] & 0xF6 == 0xF0,
        "flac": audio[:4] == b"fLaC",
        "wav": audio[:4] == b"RIFF" and audio[8:12] == b"WAVE",
        "pcm": len(audio) % 2 == 0,
    }[audio_format]


def speak(url: str, **body: object) -> httpx.Response:
    return httpx.post(url + "/v1/audio/speech", json={"voice": "alloy", **body}, timeout=60)


@pytest.mark.parametrize("audio_format", ["mp3", "wav", "opus", "aac", "flac", "pcm"])
def test_openai_client_gets_each_format(speech_api: openai.OpenAI, audio_format: str) -> None:
    answer = speech_api.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format=audio_format)
    audio = answer.content
    duration = float(answer.response.headers["X-Audio-Duration"])
    assert has_magic(audio, audio_format)
    if audio_format == "pcm":
        assert answer.response.headers["content-type"].startswith("audio/L16")
    else:
        assert codec_of(audio) == CODECS[audio_format]
    assert 0.15 * WORDS <= duration <= 1.5 * WORDS
    # Compressed codecs pad the first and last frames; the speech itself is the header's length.
    assert decoded_seconds(audio, audio_format) == pytest.approx(duration, abs=0.12)
    assert answer.response.headers["X-Voice"].startswith("en-us")


def test_wav_is_openai_pcm_with_a_header(narrate_url: str) -> None:
    wav = speak(narrate_url, input=SENTENCE, response_format="wav")
    pcm = speak(narrate_url, input=SENTENCE, response_format="pcm")
    parsed = pcm_from_wav(wav.content)
    assert parsed.sample_rate == SAMPLE_RATE
    assert parsed.samples == pcm.content
    assert pcm.headers["content-type"] == "audio/L16; rate=24000; channels=1"


def test_faster_speech_is_shorter(narrate_url: str) -> None:
    durations = {
        speed: float(speak(narrate_url, input=SENTENCE, response_format="pcm", speed=speed).headers["X-Audio-Duration"])
        for speed in (0.25, 1.0, 2.0, 4.0)
    }
    assert durations[0.25] > durations[1.0] > durations[2.0] > durations[4.0]
    # Below espeak-ng's slowest pace the audio is stretched; the pace still follows `speed`.
    assert durations[0.25] / durations[1.0] == pytest.approx(4.0, rel=0.2)


def test_openai_voice_names_pick_the_languages_voices_by_gender(narrate_url: str) -> None:
    assert speak(narrate_url, input="Hello.", voice="nova").headers["X-Voice"] == "en-us+f3"
    assert speak(narrate_url, input="Hello.", voice="onyx").headers["X-Voice"] in ("en-us", "en-us+m3")
    assert speak(narrate_url, input="Hola.", voice="nova", language="es").headers["X-Voice"] == "es+f3"
    assert speak(narrate_url, input="Olá.", voice="nova", language="pt-BR").headers["X-Voice"] == "pt-br+f3"
    assert speak(narrate_url, input="Hello.", voice={"id": "en-gb+m3"}).headers["X-Voice"] == "en-gb+m3"


@pytest.mark.parametrize(
    ("language", "text", "voice_prefix"),
    [
        ("es", "El pequeño zorro corrió por el campo nevado para buscar a sus amigos.", "es"),
        ("ar", "ركض الثعلب الصغير عبر الحقل المغطى بالثلج ليجد أصدقاءه.", "ar"),
        ("ko", "작은 여우가 친구들을 찾으러 눈 덮인 들판을 달려갔어요.", "ko"),
        ("hi", "छोटी लोमड़ी अपने दोस्तों को ढूँढने के लिए बर्फीले मैदान में दौड़ी।", "hi"),
    ],
)
def test_other_languages_speak(speech_api: openai.OpenAI, language: str, text: str, voice_prefix: str) -> None:
    answer = speech_api.audio.speech.create(
        model="tts-1", voice="shimmer", input=text, response_format="wav", extra_body={"language": language}
    )
    duration = float(answer.response.headers["X-Audio-Duration"])
    assert answer.response.headers["X-Voice"].startswith(voice_prefix)
    assert 0.15 * len(text.split()) <= duration <= 1.5 * len(text.split())
    assert decoded_seconds(answer.content, "wav") == pytest.approx(duration, abs=0.01)


def test_every_book_language_speaks_or_says_why(narrate_url: str) -> None:
    for language in LANGUAGES:
        text = "にほんご" if language.code == "ja" else language.native
        response = speak(narrate_url, input=text, language=language.code, response_format="pcm")
        if language.code == "tl":
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "language"
            assert "Filipino" in response.json()["error"]["message"]
            continue
        assert response.status_code == 200, (language.code, response.text)
        assert float(response.headers["X-Audio-Duration"]) > 0.1, language.code


def test_voices_are_listed_per_language(narrate_url: str) -> None:
    korean = httpx.get(narrate_url + "/v1/audio/voices", params={"language": "ko"}).json()["data"]
    assert korean and all(voice["language"] == "ko" and voice["id"].startswith("ko") for voice in korean)
    assert {"female", "male"} <= {voice["gender"] for voice in korean}
    assert sorted(alias for voice in korean for alias in voice["aliases"]) == sorted(OPENAI_VOICES)
    assert {voice["engine"] for voice in korean} == {"espeak-ng"}
    everything = httpx.get(narrate_url + "/v1/audio/voices").json()["data"]
    assert {voice["language"] for voice in everything} == {language.code for language in LANGUAGES} - {"tl"}
    unknown = httpx.get(narrate_url + "/v1/audio/voices", params={"language": "tl"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "language"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": " \n\t "}, "input"),
        ({"input": "a" * 4097}, "input"),
        ({"input": "😀" * 10_000}, "input"),
        ({"input": "Hi.", "response_format": "ogg"}, "response_format"),
        ({"input": "Hi.", "voice": "robot"}, "voice"),
        ({"input": "Hi.", "voice": "es+f3"}, "voice"),
        ({"input": "Hi.", "language": "xx"}, "language"),
        ({"input": "Hi.", "speed": 0.1}, "speed"),
        ({"input": "Hi.", "speed": 4.5}, "speed"),
        ({"input": "Hi.", "speed": "fast"}, "speed"),
        ({"input": "Hi.", "model": "some-other-model"}, "model"),
        ({"input": "Hi.", "stream_format": "sse"}, "stream_format"),
        ({"voice": "alloy"}, "input"),
    ],
)
def test_bad_requests_get_a_json_400_naming_the_field(narrate_url: str, body: dict, param: str) -> None:
    response = httpx.post(narrate_url + "/v1/audio/speech", json={"voice": "alloy", **body}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_over_limit_message_names_the_setting(narrate_url: str) -> None:
    message = speak(narrate_url, input="a" * 5000).json()["error"]["message"]
    assert "4,096" in message and "FABULA_MAX_SPEECH_CHARS" in message


def test_malformed_and_oversized_bodies_are_refused(narrate_url: str) -> None:
    not_json = httpx.post(narrate_url + "/v1/audio/speech", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["param"] == "body"
    a_list = httpx.post(narrate_url + "/v1/audio/speech", json=["input"])
    assert a_list.status_code == 400 and a_list.json()["error"]["param"] == "body"
    huge = httpx.post(narrate_url + "/v1/audio/speech", content=b" " * 200_000, headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["param"] == "body"


def test_hostile_text_is_read_or_refused_and_runs_nothing(narrate_url: str, tmp_path: Path) -> None:
    commands = f"$(touch {tmp_path}/a) `touch {tmp_path}/b`; touch {tmp_path}/c && rm -rf {tmp_path} | cat"
    assert speak(narrate_url, input=commands).status_code == 200
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    controls = speak(narrate_url, input="One\x00 two\x07 three\x1b[31m four.", response_format="pcm")
    plain = speak(narrate_url, input="One two three four.", response_format="pcm")
    # A NUL would end espeak-ng's input early; the words after it are read.
    assert float(controls.headers["X-Audio-Duration"]) >= 0.8 * float(plain.headers["X-Audio-Duration"])
    tagged = speak(narrate_url, input='<speak>Hello <break time="3s"/> there</speak>', response_format="pcm")
    untagged = speak(narrate_url, input="Hello there", response_format="pcm")
    assert float(tagged.headers["X-Audio-Duration"]) == pytest.approx(float(untagged.headers["X-Audio-Duration"]), abs=0.3)
    assert speak(narrate_url, input="[[h@l'oU]] and [[ more").status_code == 200
    assert speak(narrate_url, input="The fox 🦊 smiled 😀.").status_code == 200
    only_emoji = speak(narrate_url, input="🦊😀" * 2000)
    assert only_emoji.status_code == 400 and only_emoji.json()["error"]["param"] == "input"
    lone_surrogate = httpx.post(
        narrate_url + "/v1/audio/speech", content=b'{"voice": "alloy", "input": "\\udc80 a lone surrogate"}',
        headers={"content-type": "application/json"},
    )
    assert lone_surrogate.status_code == 200
    assert httpx.get(narrate_url + "/healthz").status_code == 200


def test_concurrent_requests_all_speak_and_are_measured(narrate_url: str) -> None:
    before = httpx.get(narrate_url + "/metrics").text
    sentences = [f"Page {number}: the fox found friend number {number}." for number in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda text: speak(narrate_url, input=text, response_format="wav"), sentences))
    assert [answer.status_code for answer in answers] == [200] * 8
    for answer in answers:
        assert decoded_seconds(answer.content, "wav") == pytest.approx(float(answer.headers["X-Audio-Duration"]), abs=0.01)
    after = httpx.get(narrate_url + "/metrics").text
    spoken = sum(float(answer.headers["X-Audio-Duration"]) for answer in answers)
    audio_sum = metric_value(after, "fabula_speech_audio_seconds_sum") - metric_value(before, "fabula_speech_audio_seconds_sum")
    assert audio_sum == pytest.approx(spoken, abs=0.01)
    count = metric_value(after, "fabula_speech_synthesis_seconds_count") - metric_value(before, "fabula_speech_synthesis_seconds_count")
    assert count == 8
    assert metric_value(after, "fabula_speech_synthesis_seconds_sum") > metric_value(before, "fabula_speech_synthesis_seconds_sum")
    # The sentences went through the service's batcher: every one counted once, and (with more than one CPU)
    # those that waited while a batch was speaking were spoken together.
    def grew(name: str) -> float:
        return metric_value(after, name, service="narrate") - metric_value(before, name, service="narrate")

    assert grew("fabula_batch_size_sum") == 8
    if synthesis_slots() > 1:
        assert grew("fabula_batch_size_count") < 8


def test_readiness_reports_the_engine(narrate_url: str) -> None:
    ready = httpx.get(narrate_url + "/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "espeak-ng" and ready["device"] == "cpu"
    assert ready["extra"]["version"][0].isdigit()


def test_an_unavailable_engine_fails_at_start_with_what_to_do(tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kokoro = tiny_settings.model_copy(update={"narrate_model": "kokoro"})
    with pytest.raises(ModelUnavailable, match="espeak-ng"):
        resolve_narrate_model(kokoro)
    with narrate_server(kokoro) as url:
        readiness = httpx.get(url + "/readyz")
        assert readiness.status_code == 503 and "FABULA_NARRATE_MODEL" in readiness.json()["error"]
        refused = speak(url, input="Hello.")
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "model_not_ready"
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="install the Debian package espeak-ng"):
        resolve_narrate_model(tiny_settings)


def test_api_key_is_required_when_set(tiny_settings: Settings) -> None:
    guarded = tiny_settings.model_copy(update={"api_key": SecretStr("narrate-secret")})
    with narrate_server(guarded) as url:
        refused = speak(url, input="Hello.")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert httpx.get(url + "/v1/audio/voices").status_code == 401
        assert httpx.get(url + "/healthz").status_code == 200
        client = openai.OpenAI(base_url=url + "/v1", api_key="narrate-secret", max_retries=0)
        answer = client.audio.speech.create(model="tts-1", voice="echo", input="Hello.", response_format="mp3")
        assert has_magic(answer.content, "mp3")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).audio.speech.create(
                model="tts-1", voice="echo", input="Hello."
            )


def test_narrate_client_speaks_lists_and_reports_errors(narrate_url: str) -> None:
    async def exercise() -> tuple[SpeechResult, SpeechResult, list, InvalidRequest]:
        client = NarrateClient(narrate_url, retry=RetryPolicy(attempts=2, base_delay_s=0.01))
        try:
            wav = await client.speech(SENTENCE, voice="nova", language="en")
            mp3 = await client.speech("Hola, amigos.", voice="es+m3", language="es", response_format="mp3", speed=1.5)
            voices = await client.voices("es")
            with pytest.raises(InvalidRequest) as refused:
                await client.speech("Hello.", voice="robot", language="en")
            return wav, mp3, voices, refused.value
        finally:
            await client.aclose()

    wav, mp3, voices, refused = asyncio.run(exercise())
    assert wav.format == "wav" and wav.voice == "en-us+f3"
    assert decoded_seconds(wav.audio, "wav") == pytest.approx(wav.duration, abs=0.01)
    assert mp3.voice == "es+m3" and has_magic(mp3.audio, "mp3") and mp3.duration > 0.3
    assert voices and {voice.language for voice in voices} == {"es"} and "es+m3" in {voice.id for voice in voices}
    assert refused.param == "voice"


def test_narrate_client_gives_up_on_a_service_that_is_not_there() -> None:
    async def attempt() -> None:
        client = NarrateClient(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=2, base_delay_s=0.01))
        try:
            await client.speech("Hello.", voice="alloy", language="en")
        finally:
            await client.aclose()

    with pytest.raises(UpstreamError, match="Gave up after 2 attempts"):
        asyncio.run(attempt())


def test_language_tags_choose_the_voice() -> None:
    assert find_speech_language("pt-BR").locale == "pt-br"
    assert find_speech_language("en_GB").locale == "en-gb"
    assert find_speech_language("zh-Hans").locale == "cmn"
    assert find_speech_language("nb").code == "no"
    with pytest.raises(InvalidRequest, match="Filipino"):
        find_speech_language("fil")


def test_speakable_text_keeps_words_and_drops_what_is_not_read() -> None:
    english = find_speech_language("en")
    assert speakable_text('<p class="x">The fox</p>\x00 😀 ran\u202e.', english) == "The fox ran."
    assert speakable_text("[[h@l'oU]]", english) == "[ [h@l'oU]]"
    persian = find_speech_language("fa")
    assert "\u200c" in speakable_text("می\u200cخواهم", persian)
    with pytest.raises(InvalidRequest, match="kanji"):
        speakable_text("猫が寝ています", find_speech_language("ja"))


def test_openapi_document_describes_the_speech_body(narrate_url: str) -> None:
    document = httpx.get(narrate_url + "/openapi.json").json()
    body = document["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"input", "voice", "response_format", "speed", "language"} <= set(body["properties"])
    assert "#/$defs" not in json.dumps(document)

"""The loopback OpenAI fake behaves like the real audio endpoints when driven by the real SDK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_server import MAX_BODY_BYTES, FakeOpenAIServer, Fault

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt fake-audio-bytes\x00\x01\x02\xff"
WAV = ("clip.wav", AUDIO, "audio/wav")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, timeout=2.0) as sdk:
        yield sdk


def _fake_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("fake-openai")]


def test_json_transcription_records_the_request(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """A default json transcription returns the transcript and records model, file name and exact bytes."""
    result = client.audio.transcriptions.create(model="whisper-1", file=WAV, language="en", prompt="Hi.")

    assert result.text == "hello from the fake api"
    assert result.usage is not None
    assert result.usage.type == "duration"
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.form == {"model": "whisper-1", "language": "en", "prompt": "Hi."}
    assert request.file_name == "clip.wav"
    assert request.file_content_type == "audio/wav"
    assert request.file_bytes == AUDIO
    assert request.fault is None


def test_verbose_json_with_word_granularity(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """whisper-1 verbose_json with word and segment granularities returns both, derived from the text."""
    server.transcript = "Good morning. How are you?"

    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=WAV,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )

    assert result.text == "Good morning. How are you?"
    assert result.language == "english"
    assert result.duration == 2.5
    assert result.segments is not None
    assert [(s.id, s.start, s.end, s.text) for s in result.segments] == [
        (0, 0.0, 1.0, " Good morning."),
        (1, 1.0, 2.5, " How are you?"),
    ]
    assert result.words is not None
    assert [(w.word, w.start, w.end) for w in result.words] == [
        ("Good", 0.0, 0.5),
        ("morning", 0.5, 1.0),
        ("How", 1.0, 1.5),
        ("are", 1.5, 2.0),
        ("you", 2.0, 2.5),
    ]
    assert server.requests[0].timestamp_granularities == ("word", "segment")


def test_verbose_json_without_word_granularity_has_no_words(client: openai.OpenAI) -> None:
    """verbose_json without granularities returns segments only, and a requested language by name."""
    result = client.audio.transcriptions.create(
        model="whisper-1", file=WAV, response_format="verbose_json", language="fr"
    )

    assert result.language == "french"
    assert result.segments is not None
    assert len(result.segments) == 1
    assert result.words is None


def test_text_and_subtitle_formats(client: openai.OpenAI) -> None:
    """The text, srt and vtt formats come back as plain strings."""
    text = client.audio.transcriptions.create(model="whisper-1", file=WAV, response_format="text")
    srt = client.audio.transcriptions.create(model="whisper-1", file=WAV, response_format="srt")
    vtt = client.audio.transcriptions.create(model="whisper-1", file=WAV, response_format="vtt")

    assert text == "hello from the fake api\n"
    assert srt.startswith("1\n00:00:00,000 --> 00:00:02,500\nhello from the fake api\n")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n")


def test_gpt_4o_transcribe_rejects_verbose_json(client: openai.OpenAI) -> None:
    """gpt-4o-*transcribe models answer json with token usage and reject verbose_json like the real API."""
    result = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=WAV)
    assert result.usage is not None
    assert result.usage.type == "tokens"

    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=WAV, response_format="verbose_json")
    assert caught.value.param == "response_format"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_translation_endpoint(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """The translations endpoint answers verbose_json with task translate."""
    result = client.audio.translations.create(model="whisper-1", file=WAV, response_format="verbose_json")

    assert result.text == "hello from the fake api"
    assert server.requests[0].path == "/v1/audio/translations"


def test_unknown_extension_is_rejected(client: openai.OpenAI) -> None:
    """A file name whose extension the real API does not accept yields a 400 BadRequestError."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", AUDIO, "text/plain"))

    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_value"
    assert caught.value.param == "file"
    assert caught.value.message.endswith(
        "Invalid file format. Supported formats: "
        "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
    )


def test_unknown_model_is_accepted(client: openai.OpenAI) -> None:
    """A model name the fake has never heard of is accepted, as the tests of other backends need."""
    assert client.audio.transcriptions.create(model="my-local-model", file=WAV).text


def test_missing_model_and_missing_key_over_raw_http(server: FakeOpenAIServer) -> None:
    """Requests the SDK cannot produce (no model, no key) get the real API's 400 and 401 bodies."""
    url = f"{server.base_url}/audio/transcriptions"
    files = {"file": ("clip.wav", AUDIO, "audio/wav")}

    no_model = httpx.post(url, files=files, headers={"authorization": "Bearer test-key"})
    no_key = httpx.post(url, files=files, data={"model": "whisper-1"})

    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "you must provide a model parameter"
    assert no_key.status_code == 401
    assert set(no_key.json()["error"]) == {"message", "type", "param", "code"}


def test_oversized_upload_is_413(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """A 26 MiB upload exceeds the 25 MiB limit and fails with a 413 APIStatusError."""
    big = bytes(26 * 1024 * 1024)

    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big, "audio/wav"))

    assert caught.value.status_code == 413
    assert type(caught.value) is openai.APIStatusError
    assert server.requests[0].body_size > MAX_BODY_BYTES


def test_rate_limit(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """An enqueued 429 raises RateLimitError with a retry-after header and the rate_limit_exceeded code."""
    server.enqueue(Fault.rate_limited(retry_after=2))

    with pytest.raises(openai.RateLimitError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=WAV)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert client.audio.transcriptions.create(model="whisper-1", file=WAV).text  # normal again


def test_server_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """An enqueued 500 raises InternalServerError."""
    server.enqueue(Fault(status=500))

    with pytest.raises(openai.InternalServerError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=WAV)

    assert caught.value.status_code == 500


def test_slow_response_times_out(server: FakeOpenAIServer) -> None:
    """A response delayed past the client timeout raises APITimeoutError and does not delay shutdown."""
    server.enqueue(Fault.slow(5.0))
    with openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, timeout=0.2) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            sdk.audio.transcriptions.create(model="whisper-1", file=WAV)
    assert time.monotonic() - started < 1.0


def test_connection_reset(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """A connection reset after the request was read raises APIConnectionError (not a timeout)."""
    server.enqueue(Fault.connection_reset())

    with pytest.raises(openai.APIConnectionError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=WAV)

    assert not isinstance(caught.value, openai.APITimeoutError)
    assert server.requests[0].file_bytes == AUDIO


def test_malformed_json_surfaces_as_decode_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """A 200 with truncated JSON makes the SDK raise json.JSONDecodeError, which callers must handle."""
    server.enqueue(Fault.bad_json())

    with pytest.raises(json.JSONDecodeError):
        client.audio.transcriptions.create(model="whisper-1", file=WAV)


def test_wrong_api_key(server: FakeOpenAIServer) -> None:
    """A wrong bearer key raises AuthenticationError with the invalid_api_key code."""
    sdk = openai.OpenAI(api_key="not-the-key", base_url=server.base_url, max_retries=0)
    with sdk, pytest.raises(openai.AuthenticationError) as caught:
        sdk.audio.transcriptions.create(model="whisper-1", file=WAV)

    assert caught.value.code == "invalid_api_key"


def test_sdk_retries_past_one_503(server: FakeOpenAIServer) -> None:
    """With max_retries=2 the SDK retries a 503 by itself and the second attempt succeeds."""
    server.enqueue(Fault.server_error(503, retry_after=0.01))
    with openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=2, timeout=2.0) as sdk:
        result = sdk.audio.transcriptions.create(model="whisper-1", file=WAV)

    assert result.text == "hello from the fake api"
    first, second = server.requests
    assert first.fault == Fault.server_error(503, retry_after=0.01)
    assert second.fault is None
    assert [first.headers["x-stainless-retry-count"], second.headers["x-stainless-retry-count"]] == ["0", "1"]
    assert second.file_bytes == AUDIO


def test_faults_apply_in_fifo_order_then_default(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    """Enqueued faults apply one per request in order, then the default fault applies to every request."""
    server.enqueue(Fault(status=502), Fault(status=503))
    server.set_default_fault(Fault(status=500))

    statuses = []
    for _ in range(4):
        with pytest.raises(openai.InternalServerError) as caught:
            client.audio.transcriptions.create(model="whisper-1", file=WAV)
        statuses.append(caught.value.status_code)
    server.set_default_fault(None)

    assert statuses == [502, 503, 500, 500]
    assert client.audio.transcriptions.create(model="whisper-1", file=WAV).text


def test_hung_requests_do_not_block_shutdown() -> None:
    """Hung requests time out on the client, and leaving the context stops the server at once, leak-free."""
    already_running = set(_fake_threads())  # the session-wide fake serves other tests meanwhile
    with FakeOpenAIServer() as server:
        server.set_default_fault(Fault.hung())
        with openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, timeout=0.2) as sdk:
            with pytest.raises(openai.APITimeoutError):
                sdk.audio.transcriptions.create(model="whisper-1", file=WAV)
            started = time.monotonic()
    assert time.monotonic() - started < 0.5
    assert set(_fake_threads()) - already_running == set()


async def test_slow_request_does_not_block_others() -> None:
    """A delayed request does not hold up a concurrent one on another connection (async SDK)."""
    with FakeOpenAIServer() as server:
        server.enqueue(Fault.slow(0.6))
        async with openai.AsyncOpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, timeout=2.0) as sdk:

            async def timed() -> float:
                started = time.monotonic()
                await sdk.audio.transcriptions.create(model="whisper-1", file=WAV)
                return time.monotonic() - started

            durations = sorted(await asyncio.gather(timed(), timed()))

    assert durations[0] < 0.45
    assert durations[1] >= 0.6

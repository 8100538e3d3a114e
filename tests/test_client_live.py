"""The Python clients' live call over real gRPC against a small in-process fake of TranscribeLive."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client import live_config, live_to_dict
from transcribe_client.client import SERVICE_NAME, AsyncTranscribeClient, TranscribeClient
from transcribe_client.errors import STATUS_DETAILS_KEY, TranscribeError

Context = Any
WAIT = 10.0
CHUNKS = [bytes([index]) * 3200 for index in range(5)]


@dataclass
class LiveCall:
    """What the fake server saw of one TranscribeLive call."""

    config: pb.LiveConfig
    metadata: dict[str, str]
    time_remaining: float | None
    chunks: list[bytes] = field(default_factory=list)
    half_closed: bool = False
    cancelled: bool | None = None


@dataclass
class FakeLive:
    """A scriptable TranscribeLive: an interim per chunk, then a final digest of the audio once the client half-closes.

    fail_after aborts with INVALID_ARGUMENT and an ErrorInfo after that many chunks; hold keeps the call open after
    the half-close until the client cancels it.
    """

    address: str = ""
    calls: list[LiveCall] = field(default_factory=list)
    fail_after: int | None = None
    hold: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def transcribe_live(
        self, requests: AsyncIterator[pb.TranscribeLiveRequest], context: Context
    ) -> AsyncIterator[pb.TranscribeLiveResponse]:
        first = await anext(requests)
        assert first.WhichOneof("streaming_request") == "live_config"
        call = LiveCall(first.live_config, dict(context.invocation_metadata()), context.time_remaining())
        self.calls.append(call)
        self.started.set()
        try:
            async for response in self._respond(first.live_config, call, requests, context):
                yield response
            call.cancelled = False
        except (asyncio.CancelledError, GeneratorExit):
            # When the client cancels, grpc.aio cancels the handler, or closes it where it waits at a yield.
            call.cancelled = True
            raise
        finally:
            self.ended.set()

    async def _respond(
        self,
        config: pb.LiveConfig,
        call: LiveCall,
        requests: AsyncIterator[pb.TranscribeLiveRequest],
        context: Context,
    ) -> AsyncIterator[pb.TranscribeLiveResponse]:
        yield pb.TranscribeLiveResponse(backend=pb.BACKEND_LOCAL, model="fake")
        async for request in requests:
            assert request.WhichOneof("streaming_request") == "audio_content"
            call.chunks.append(request.audio_content)
            if self.fail_after is not None and len(call.chunks) > self.fail_after:
                await _abort_bad_audio(context)
            if config.voice_activity_events and len(call.chunks) == 1:
                event = pb.VoiceActivityEvent(type=pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN)
                event.offset.FromMilliseconds(100)
                yield pb.TranscribeLiveResponse(voice_activity=event)
            if config.interim_results:
                yield pb.TranscribeLiveResponse(results=[_result(str(len(call.chunks)), final=False)])
        call.half_closed = True
        if self.hold:
            await asyncio.Event().wait()  # until the client cancels
        yield pb.TranscribeLiveResponse(results=[_result(hashlib.sha256(b"".join(call.chunks)).hexdigest())])


def _result(text: str, *, final: bool = True) -> pb.LiveResult:
    result = pb.LiveResult(text=text, is_final=final, stability=0.0 if final else 0.5)
    result.end_offset.FromMilliseconds(250)
    return result


async def _abort_bad_audio(context: Context) -> None:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="odd number of bytes")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="AUDIO_FORMAT_MISMATCH", domain="transcribe.v1"))
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        status.message,
        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
    )


@pytest.fixture
async def fake_live() -> AsyncIterator[FakeLive]:
    """The fake TranscribeLive on an ephemeral loopback port."""
    fake = FakeLive()
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        fake.transcribe_live,
        request_deserializer=pb.TranscribeLiveRequest.FromString,
        response_serializer=pb.TranscribeLiveResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, {"TranscribeLive": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


def texts(responses: list[pb.TranscribeLiveResponse]) -> list[tuple[str, bool]]:
    return [(result.text, result.is_final) for response in responses for result in response.results]


DIGEST = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
EXPECTED = [*((str(n), False) for n in range(1, 6)), (DIGEST, True)]


async def test_sync_live_sends_config_then_chunks_and_yields_until_the_final(fake_live: FakeLive) -> None:
    """The sync live call sends the LiveConfig first, every chunk in order, half-closes, and yields every response."""
    with TranscribeClient(fake_live.address, token="t0k") as client:
        responses = await asyncio.to_thread(
            lambda: list(
                client.live(
                    iter(CHUNKS),
                    sample_rate=48000,
                    channels=2,
                    voice_activity_events=True,
                    speech_start_timeout=3,
                    speech_end_timeout=0.3,
                    backend="local",
                    model="tiny.en",
                    language="en",
                    prompt="Ana",
                    word_timestamps=True,
                    metadata=[("x-request-id", "r1")],
                )
            )
        )
    assert texts(responses) == EXPECTED
    assert responses[0].model == "fake"
    assert live_to_dict(responses[1]) == {"voice_activity": {"type": "speech_begin", "offset": 0.1}}
    [call] = fake_live.calls
    assert call.chunks == CHUNKS
    assert call.half_closed
    assert call.metadata["authorization"] == "Bearer t0k"
    assert call.metadata["x-request-id"] == "r1"
    assert call.time_remaining is None or call.time_remaining > 3600  # no deadline by default
    config = call.config
    assert config.audio_format == pb.LIVE_AUDIO_FORMAT_LINEAR16
    assert (config.sample_rate_hertz, config.audio_channel_count) == (48000, 2)
    assert config.interim_results
    assert config.voice_activity_events
    assert config.speech_start_timeout.ToMilliseconds() == 3000
    assert config.speech_end_timeout.ToMilliseconds() == 300
    assert config.config.backend == pb.BACKEND_LOCAL
    assert (config.config.model, config.config.language_code, config.config.prompt) == ("tiny.en", "en", "Ana")
    assert config.config.enable_word_time_offsets
    assert not config.config.HasField("explicit_decoding_config")


async def test_async_live_from_an_async_iterable(fake_live: FakeLive) -> None:
    """The async live call streams an async iterable of chunks and yields every response in order."""

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in CHUNKS:
            yield chunk

    async with AsyncTranscribeClient(fake_live.address) as client:
        responses = [response async for response in client.live(chunks(), timeout=30)]
    assert texts(responses) == EXPECTED
    [call] = fake_live.calls
    assert call.chunks == CHUNKS
    assert call.time_remaining is not None
    assert 25 < call.time_remaining <= 31


async def test_async_live_reads_a_blocking_iterator_off_the_event_loop(fake_live: FakeLive) -> None:
    """A plain iterator is advanced on a worker thread, so one that blocks does not stall the event loop."""
    release = threading.Event()

    def blocking() -> Iterator[bytes]:
        yield CHUNKS[0]
        release.wait(WAIT)  # blocks like a microphone until the loop (which must stay free) releases it
        yield from CHUNKS[1:]

    async with AsyncTranscribeClient(fake_live.address) as client:
        responses = []
        async for response in client.live(blocking(), interim_results=True):
            responses.append(response)
            if texts([response]) == [("1", False)]:
                release.set()
    assert texts(responses) == EXPECTED


async def test_final_only_config_gets_no_interims(fake_live: FakeLive) -> None:
    """interim_results=False reaches the server, which then sends only the final result."""
    with TranscribeClient(fake_live.address) as client:
        responses = await asyncio.to_thread(lambda: list(client.live(CHUNKS, interim_results=False)))
    assert texts(responses) == [(DIGEST, True)]
    assert not fake_live.calls[0].config.interim_results


async def test_server_errors_raise_transcribe_error_after_the_earlier_responses(fake_live: FakeLive) -> None:
    """An abort mid-stream raises TranscribeError with its reason, after the responses sent before it."""
    fake_live.fail_after = 2
    seen: list[pb.TranscribeLiveResponse] = []

    def sync_run() -> None:
        with TranscribeClient(fake_live.address) as client:
            seen.extend(client.live(CHUNKS))

    with pytest.raises(TranscribeError) as sync_error:
        await asyncio.to_thread(sync_run)
    assert texts(seen) == [("1", False), ("2", False)]
    async with AsyncTranscribeClient(fake_live.address) as client:
        with pytest.raises(TranscribeError) as async_error:
            async for _ in client.live(CHUNKS):
                pass
    for caught in (sync_error, async_error):
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.reason == "AUDIO_FORMAT_MISMATCH"
        assert caught.value.exit_code == 67


def failing_chunks(handled: threading.Event | None = None) -> Iterator[bytes]:
    """Two chunks, then a read error (once the server handles the call, when `handled` is given: a call cancelled
    before that never reaches the server's handler)."""
    yield CHUNKS[0]
    yield CHUNKS[1]
    if handled is not None:
        handled.wait(WAIT)
    raise OSError(5, "Input/output error")


async def test_sync_source_error_cancels_the_call_quietly(
    fake_live: FakeLive, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk source that raises cancels the sync call, re-raises its own error, and gRPC logs nothing."""
    fake_live.hold = True
    with (
        caplog.at_level(logging.ERROR),
        TranscribeClient(fake_live.address) as client,
        pytest.raises(OSError, match="Input/output error"),
    ):
        await asyncio.to_thread(lambda: list(client.live(failing_chunks(fake_live.started))))
    await asyncio.wait_for(fake_live.ended.wait(), WAIT)
    assert fake_live.calls[0].cancelled is True
    assert not [record for record in caplog.records if record.name.startswith("grpc")]


async def test_async_source_error_cancels_the_call(fake_live: FakeLive) -> None:
    """A chunk source that raises cancels the async call and re-raises its own error."""
    fake_live.hold = True
    async with AsyncTranscribeClient(fake_live.address) as client:
        with pytest.raises(OSError, match="Input/output error"):
            async for _ in client.live(failing_chunks()):
                pass
    await asyncio.wait_for(fake_live.ended.wait(), WAIT)
    assert fake_live.calls[0].cancelled is True


async def test_sync_closing_early_cancels_the_call(fake_live: FakeLive) -> None:
    """Leaving the sync loop early cancels the call, so the server frees the session at once."""
    fake_live.hold = True

    def first_interim() -> pb.TranscribeLiveResponse:
        with TranscribeClient(fake_live.address) as client:
            for response in client.live(CHUNKS):
                if response.results:
                    return response
        raise AssertionError("no result")

    response = await asyncio.to_thread(first_interim)
    assert texts([response]) == [("1", False)]
    await asyncio.wait_for(fake_live.ended.wait(), WAIT)
    assert fake_live.calls[0].cancelled is True


async def test_async_aclose_cancels_the_call(fake_live: FakeLive) -> None:
    """aclose() on the async live generator (contextlib.aclosing) cancels the call at once."""
    fake_live.hold = True
    async with (
        AsyncTranscribeClient(fake_live.address) as client,
        contextlib.aclosing(client.live(CHUNKS)) as responses,
    ):
        async for response in responses:
            if response.results:
                break
    await asyncio.wait_for(fake_live.ended.wait(), WAIT)
    assert fake_live.calls[0].cancelled is True


async def test_chunks_must_be_bytes(fake_live: FakeLive) -> None:
    """A chunk that is not bytes-like fails with TypeError instead of being sent as something else."""
    with TranscribeClient(fake_live.address) as client, pytest.raises(TypeError, match="must be bytes"):
        await asyncio.to_thread(lambda: list(client.live([b"ok", "text"])))  # type: ignore[list-item]


def test_live_config_for_containers_and_bad_values() -> None:
    """Container formats leave the PCM layout unset; unknown formats and negative values are refused locally."""
    config = live_config(audio_format="webm-opus", interim_results=False, speech_end_timeout=1.25)
    assert config.audio_format == pb.LIVE_AUDIO_FORMAT_WEBM_OPUS
    assert (config.sample_rate_hertz, config.audio_channel_count) == (0, 0)
    assert not config.interim_results
    assert config.speech_end_timeout.ToMilliseconds() == 1250
    assert not config.HasField("speech_start_timeout")
    assert live_config(audio_format=pb.LIVE_AUDIO_FORMAT_OGG_OPUS).audio_format == pb.LIVE_AUDIO_FORMAT_OGG_OPUS
    with pytest.raises(ValueError, match="unknown audio format"):
        live_config(audio_format="mp3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speech_end_timeout"):
        live_config(speech_end_timeout=-1)
    with TranscribeClient("127.0.0.1:1") as client, pytest.raises(ValueError, match="timeout"):
        client.live([], timeout=0)


def test_live_to_dict_gives_the_language_when_the_result_has_one() -> None:
    """A result's language_code is kept when set and left out when empty, as the CLI's JSON lines show."""
    result = pb.LiveResult(text="Bonjour.", is_final=True, language_code="fr")
    assert live_to_dict(pb.TranscribeLiveResponse(results=[result]))["results"][0]["language_code"] == "fr"
    result.language_code = ""
    assert "language_code" not in live_to_dict(pb.TranscribeLiveResponse(results=[result]))["results"][0]

"""Live transcription over TranscribeLive: utterances, interims, finals, voice events and every refusal."""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from service.audio.decode import decode_to_whisper_input
from service.domain import BackendKind
from tests.conftest import DATA, Fixture, StartServer, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import error_details
from transcribe.v1 import transcribe_service_pb2 as pb

CHUNK = 3200  # 100 ms of 16 kHz 16-bit mono


def pcm_of(name: str) -> bytes:
    """A fixture decoded to 16 kHz mono LINEAR16."""
    samples = decode_to_whisper_input(DATA / name)
    return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()


def live_config(**fields: Any) -> pb.TranscribeLiveRequest:
    """A first message for 16 kHz mono LINEAR16, with the given LiveConfig fields."""
    base: dict[str, Any] = {
        "audio_format": pb.LIVE_AUDIO_FORMAT_LINEAR16,
        "sample_rate_hertz": 16000,
        "audio_channel_count": 1,
    }
    return pb.TranscribeLiveRequest(live_config=pb.LiveConfig(**(base | fields)))


async def stream(first: pb.TranscribeLiveRequest | None, audio: bytes, chunk: int = CHUNK) -> AsyncIterator[Any]:
    """The config (when given), then the audio in chunks, as fast as the server takes them."""
    if first is not None:
        yield first
    for start in range(0, len(audio), chunk):
        yield pb.TranscribeLiveRequest(audio_content=audio[start : start + chunk])


async def responses(call: Any) -> list[pb.TranscribeLiveResponse]:
    """Every response of a live call."""
    return [response async for response in call]


def seconds(value: Duration) -> float:
    """A Duration in seconds."""
    return value.ToNanoseconds() / 1e9


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    return re.findall(r"[a-z']+", text.lower())


def finals(received: Iterable[pb.TranscribeLiveResponse]) -> list[pb.LiveResult]:
    """The final results, in order."""
    return [result for response in received for result in response.results if result.is_final]


async def test_finals_cover_the_whole_text_once_in_order(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """A minute of speech comes back as finals whose words follow the spoken text, none lost or repeated."""
    server = await start_server()
    fixture = spoken["speech_en_60s.ogg"]
    received = await responses(server.stub.TranscribeLive(stream(live_config(), pcm_of(fixture.path.name))))
    assert received[0].backend == pb.BACKEND_LOCAL
    assert received[0].model == "tiny.en"
    results = finals(received)
    assert len(results) >= 3, "a minute of speech with pauses is several utterances"
    got, expected = words(" ".join(r.text for r in results)), words(fixture.text)
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    changes = [(tag, expected[i1:i2], got[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    # Misheard words are substitutions; the model may drop or add a single word now and then, but a seam between
    # utterances that lost or repeated audio would show as a run of words.
    lost_or_added = [(a, b) for _, a, b in changes if len(a) != len(b)]
    assert sum(abs(len(a) - len(b)) for a, b in lost_or_added) <= 2, changes
    assert all(abs(len(a) - len(b)) == 1 for a, b in lost_or_added), changes
    assert matcher.ratio() > 0.9
    starts = [seconds(r.start_offset) for r in results]
    ends = [seconds(r.end_offset) for r in results]
    assert starts == sorted(starts)
    assert all(end <= next_start + 1e-6 for end, next_start in zip(ends, starts[1:], strict=False))
    assert ends[-1] <= fixture.duration + 0.1


async def test_interims_come_before_the_final_of_their_utterance(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Interims of an utterance come before its final, never after; finals carry no stability; voice events come."""
    server = await start_server(live_interim_interval_seconds=0.5)
    config = live_config(interim_results=True, voice_activity_events=True)
    pcm, interim_seen = pcm_of("speech_en.wav"), asyncio.Event()

    async def requests() -> AsyncIterator[pb.TranscribeLiveRequest]:
        # The first utterance's first 2 s, then nothing more until an interim of it has come back.
        yield config
        for start in range(0, 16000 * 2 * 2, CHUNK):
            yield pb.TranscribeLiveRequest(audio_content=pcm[start : start + CHUNK])
        await interim_seen.wait()
        async for request in stream(None, pcm[16000 * 2 * 2 :]):
            yield request

    received = []
    async for response in server.stub.TranscribeLive(requests()):
        received.append(response)
        if any(not result.is_final for result in response.results):
            interim_seen.set()
    kinds = []
    for response in received:
        for result in response.results:
            kinds.append(("final" if result.is_final else "interim", seconds(result.start_offset)))
            assert 0.0 <= result.stability <= 1.0
            if result.is_final:
                assert result.stability == 0.0
        if response.HasField("voice_activity"):
            kinds.append((pb.VoiceActivityEventType.Name(response.voice_activity.type), 0.0))
    final_starts = [start for kind, start in kinds if kind == "final"]
    assert final_starts, kinds
    assert ("interim", final_starts[0]) in kinds[: kinds.index(("final", final_starts[0]))], kinds
    for start in final_starts:
        after_final = kinds[kinds.index(("final", start)) + 1 :]
        assert ("interim", start) not in after_final, "an interim never follows its utterance's final"
    assert kinds[0][0] == "VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN"
    assert any(kind == "VOICE_ACTIVITY_EVENT_TYPE_SPEECH_END" for kind, _ in kinds)
    assert "fox" in " ".join(r.text for r in finals(received)).lower()


async def test_word_offsets_on_finals_are_inside_their_utterance(start_server: StartServer) -> None:
    """Finals carry word offsets from the start of the stream when asked for."""
    server = await start_server()
    config = live_config(config=pb.TranscriptionConfig(enable_word_time_offsets=True))
    results = finals(await responses(server.stub.TranscribeLive(stream(config, pcm_of("speech_en.wav")))))
    for result in results:
        assert result.words
        for word in result.words:
            assert seconds(result.start_offset) - 0.05 <= seconds(word.start_offset) <= seconds(result.end_offset) + 0.5


async def test_silence_yields_no_text_and_no_events(start_server: StartServer) -> None:
    """A minute of silence gives no result and no voice activity event."""
    server = await start_server()
    config = live_config(interim_results=True, voice_activity_events=True)
    received = await responses(server.stub.TranscribeLive(stream(config, bytes(16000 * 2 * 60), chunk=32000)))
    assert [r for r in received if r.results or r.HasField("voice_activity")] == []


@pytest.mark.parametrize(("name", "audio_format"), [("speech_en.webm", "WEBM_OPUS"), ("speech_en.ogg", "OGG_OPUS")])
async def test_container_streams_are_decoded_as_they_arrive(
    start_server: StartServer, name: str, audio_format: str
) -> None:
    """A WebM or Ogg Opus stream, sent in small pieces as a browser would, is transcribed."""
    server = await start_server()
    config = pb.TranscribeLiveRequest(
        live_config=pb.LiveConfig(audio_format=pb.LiveAudioFormat.Value(f"LIVE_AUDIO_FORMAT_{audio_format}"))
    )
    data = (DATA / name).read_bytes()
    results = finals(await responses(server.stub.TranscribeLive(stream(config, data, chunk=1000))))
    assert "fox" in " ".join(r.text for r in results).lower()


async def test_the_api_backend_gives_finals_per_utterance(
    start_server: StartServer, fake_openai: FakeOpenAIServer
) -> None:
    """With the API backend each utterance is sent as a small file and comes back as a final."""
    backend = openai_backend_for(fake_openai)
    server = await start_server(backends={BackendKind.OPENAI: backend}, default_backend="openai", openai_api_key="k")
    before = len(fake_openai.requests)
    received = await responses(server.stub.TranscribeLive(stream(live_config(), pcm_of("speech_en.wav"))))
    assert received[0].backend == pb.BACKEND_OPENAI
    results = finals(received)
    assert results
    assert all(r.text for r in results)
    assert len(fake_openai.requests) - before == len(results)
    assert all((req.file_name or "").endswith(".flac") for req in fake_openai.requests[before:])


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call."""
    info, _ = error_details(error)
    return str(info.reason)


async def fails(call: Any) -> grpc.aio.AioRpcError:
    """The error a live call ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await responses(call)
    return caught.value


async def test_bad_live_streams_get_their_status(start_server: StartServer, fake_openai: FakeOpenAIServer) -> None:
    """Config missing, twice or late, bad framing, undecodable containers and bad fields each get their code."""
    server = await start_server(openai_api_key="k")
    pcm = pcm_of("speech_en.wav")[: 16000 * 2]

    async def twice() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        yield pb.TranscribeLiveRequest(audio_content=pcm[:3200])
        yield live_config()

    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (stream(None, pcm), grpc.StatusCode.INVALID_ARGUMENT, "STREAM_OUT_OF_ORDER"),
        (twice(), grpc.StatusCode.INVALID_ARGUMENT, "STREAM_OUT_OF_ORDER"),
        (stream(live_config(), pcm + b"\x01"), grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_TRUNCATED"),
        (stream(live_config(sample_rate_hertz=0), pcm), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"),
        (
            stream(pb.TranscribeLiveRequest(live_config=pb.LiveConfig()), pcm),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
        (
            stream(
                pb.TranscribeLiveRequest(live_config=pb.LiveConfig(audio_format=pb.LIVE_AUDIO_FORMAT_WEBM_OPUS)),
                b"definitely not webm " * 500,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "AUDIO_UNDECODABLE",
        ),
        (
            stream(live_config(interim_results=True, config=pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI)), pcm),
            grpc.StatusCode.FAILED_PRECONDITION,
            "BACKEND_NOT_CONFIGURED",
        ),
        (
            stream(live_config(speech_end_timeout=Duration(seconds=30)), pcm),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
    ]
    for requests, code, reason in cases:
        error = await fails(server.stub.TranscribeLive(requests))
        assert (error.code(), reason_of(error)) == (code, reason), error.details()
    assert server.live.gate.in_flight == 0


async def test_interim_results_need_a_local_backend(start_server: StartServer, fake_openai: FakeOpenAIServer) -> None:
    """Asking the API backend for interim results is refused before any audio is read."""
    server = await start_server(
        backends={BackendKind.OPENAI: openai_backend_for(fake_openai)}, default_backend="openai", openai_api_key="k"
    )
    error = await fails(server.stub.TranscribeLive(stream(live_config(interim_results=True), b"")))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.FAILED_PRECONDITION, "LIVE_NOT_SUPPORTED")


async def test_no_speech_before_the_start_timeout_ends_the_stream(start_server: StartServer) -> None:
    """A stream with only silence for longer than its speech start timeout ends with DEADLINE_EXCEEDED."""
    server = await start_server()
    config = live_config(speech_start_timeout=Duration(seconds=2))
    error = await fails(server.stub.TranscribeLive(stream(config, bytes(16000 * 2 * 5))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, "SPEECH_START_TIMEOUT")


async def test_a_session_longer_than_the_maximum_is_ended(start_server: StartServer) -> None:
    """Audio past live_max_session_seconds ends the stream with OUT_OF_RANGE."""
    server = await start_server(live_max_session_seconds=3)
    error = await fails(server.stub.TranscribeLive(stream(live_config(), bytes(16000 * 2 * 5))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.OUT_OF_RANGE, "LIVE_SESSION_TOO_LONG")


async def test_a_silent_client_is_ended_by_the_idle_timeout(start_server: StartServer) -> None:
    """A client that sends nothing for longer than the stream idle timeout gets DEADLINE_EXCEEDED."""
    server = await start_server(stream_idle_timeout_seconds=0.5)
    hold = asyncio.Event()

    async def quiet() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        await hold.wait()

    try:
        error = await fails(server.stub.TranscribeLive(quiet()))
    finally:
        hold.set()
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, "STREAM_IDLE_TIMEOUT")


async def test_sessions_beyond_capacity_are_refused_at_once_and_cancelling_frees_a_place(
    start_server: StartServer,
) -> None:
    """With one place, a second stream gets RESOURCE_EXHAUSTED with RetryInfo; cancelling the first frees it."""
    server = await start_server(live_max_sessions=1)
    hold = asyncio.Event()

    async def open_ended() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        yield pb.TranscribeLiveRequest(audio_content=bytes(3200))
        await hold.wait()

    first = server.stub.TranscribeLive(open_ended())
    try:
        await first.read()
        assert server.live.gate.in_flight == 1
        error = await fails(server.stub.TranscribeLive(stream(live_config(), bytes(3200))))
        assert (error.code(), reason_of(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
        raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        assert isinstance(raw, bytes)
        status = status_pb2.Status.FromString(raw)
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        first.cancel()
        for _ in range(200):
            if server.live.gate.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert server.live.gate.in_flight == 0
        again = await responses(server.stub.TranscribeLive(stream(live_config(), bytes(3200))))
        assert again[0].model == "tiny.en"
    finally:
        hold.set()

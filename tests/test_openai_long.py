"""The API backend sends recordings too large for one request as FLAC pieces cut where nobody speaks."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from service.audio.decode import WHISPER_SAMPLE_RATE, encode_flac
from service.audio.probe import probe
from service.backends import openai_api
from service.backends.openai_api import OpenAIBackend
from service.domain import AudioFile, Transcript, TranscriptionOptions
from service.errors import UpstreamRateLimited
from tests.conftest import DATA, openai_backend_for
from tests.fakes.openai_server import MAX_BODY_BYTES, FakeOpenAIServer, Fault, audio_seconds, describe_duration

HOUR = 3600.0
PROMPT = "Minutes of the weekly meeting."
WHISPER = TranscriptionOptions(model="whisper-1", prompt=PROMPT)
DESCRIBED = re.compile(r"audio of (\d+\.\d{3}) seconds\.")


def write_recording(directory: Path, seconds: float, *, spoken: bool = True) -> AudioFile:
    """speech_en.wav again and again with 1.5 to 6 s of silence between, validated as an upload is."""
    with wave.open(str(DATA / "speech_en.wav"), "rb") as source:
        speech = source.readframes(source.getnframes()) if spoken else bytes(2 * WHISPER_SAMPLE_RATE)
    rng = np.random.default_rng(7)
    upload, whisper_input = directory / "recording.wav", directory / "recording.pcm"
    with wave.open(str(upload), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(WHISPER_SAMPLE_RATE)
        while wav.tell() < seconds * WHISPER_SAMPLE_RATE:
            wav.writeframes(speech)
            wav.writeframes(bytes(2 * round(rng.uniform(1.5, 6.0) * WHISPER_SAMPLE_RATE)))
    info = probe(upload, max_seconds=2 * seconds, whisper_input=whisper_input)
    return AudioFile(path=str(upload), info=info, whisper_input=str(whisper_input))


def inputs_only(audio: AudioFile) -> bool:
    """Nothing but the upload and its Whisper input is left in their directory."""
    return sorted(Path(audio.path).parent.iterdir()) == sorted([Path(audio.path), Path(audio.whisper_input)])


@pytest.fixture(scope="module")
def hour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AudioFile]:
    """An hour-long 16 kHz mono WAV upload (about 115 MB) and its Whisper input."""
    audio = write_recording(tmp_path_factory.mktemp("hour"), HOUR)
    yield audio
    Path(audio.path).unlink()
    Path(audio.whisper_input).unlink()


@pytest.fixture
def api() -> Iterator[FakeOpenAIServer]:
    """A loopback API whose every transcript names the length of the audio it was sent."""
    with FakeOpenAIServer(transcript_for=describe_duration) as server:
        yield server


@pytest.fixture
async def backends() -> AsyncIterator[list[OpenAIBackend]]:
    """Backends a test makes, closed when it ends."""
    made: list[OpenAIBackend] = []
    yield made
    for backend in made:
        await backend.aclose()


def pieces_of(transcript: Transcript) -> list[tuple[float, float]]:
    """(start, seconds sent) of every piece, read from its segment: one per piece, naming its audio's length."""
    found = []
    for segment in transcript.segments:
        match = DESCRIBED.fullmatch(segment.text.strip())
        assert match is not None, segment.text
        found.append((segment.start, float(match.group(1))))
    return found


def assert_tiles(pieces: list[tuple[float, float]], total: float) -> None:
    """The pieces follow each other without overlap, at most 600 s each, and cover all but silence."""
    starts = [start for start, _ in pieces]
    assert starts == sorted(starts)
    for (start, seconds), (following, _) in itertools.pairwise(pieces):
        assert start + seconds <= following + 1e-3
    assert all(seconds <= 600 + 1e-3 for _, seconds in pieces)
    assert pieces[0][0] < 10
    assert pieces[-1][0] + pieces[-1][1] == pytest.approx(total, abs=10)
    assert sum(seconds for _, seconds in pieces) > 0.98 * total


async def test_an_hour_goes_in_pieces_each_prompted_with_the_last(
    hour: AudioFile, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """One at a time, an hour is sent as FLAC pieces under 25 MiB, each prompted with the text before it, and merged."""
    backend = openai_backend_for(api, piece_concurrency=1)
    backends.append(backend)
    reported: list[tuple[float, float]] = []
    transcript = await backend.transcribe(hour, WHISPER, progress=lambda done, total: reported.append((done, total)))
    requests = api.requests
    total = hour.info.duration
    assert hour.info.size_bytes > MAX_BODY_BYTES
    assert len(requests) > 1
    assert all(r.body_size < MAX_BODY_BYTES and r.fault is None for r in requests)
    assert all((r.file_name or "").endswith(".flac") for r in requests)
    texts = [describe_duration(r) for r in requests]
    assert transcript.text == " ".join(texts)
    assert [s.text.strip() for s in transcript.segments] == texts
    assert_tiles(pieces_of(transcript), total)
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)
    assert [r.form.get("prompt") for r in requests] == [PROMPT, *(f"{PROMPT} {text}" for text in texts[:-1])]
    assert [done for done, _ in reported] == sorted(done for done, _ in reported)
    assert len(reported) == len(requests)
    assert reported[-1] == (total, total)
    assert transcript.duration == total
    assert transcript.language == "en"
    assert inputs_only(hour)


async def test_pieces_sent_concurrently_merge_in_recording_order(
    hour: AudioFile, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """Pieces sent four at a time merge in recording order, each prompted only with an earlier piece's text."""
    backend = openai_backend_for(api, workers=4, piece_concurrency=4)
    backends.append(backend)
    transcript = await backend.transcribe(hour, WHISPER)
    requests = api.requests
    assert len(requests) > 1
    assert all(r.body_size < MAX_BODY_BYTES for r in requests)
    pieces = pieces_of(transcript)
    assert_tiles(pieces, hour.info.duration)
    order = [s.text.strip() for s in transcript.segments]
    assert sorted(order) == sorted(describe_duration(r) for r in requests)
    assert len(set(order)) == len(order)
    assert transcript.text == " ".join(order)
    for request in requests:
        own = order.index(describe_duration(request))
        prompt = request.form.get("prompt", "")
        earlier = prompt.removeprefix(PROMPT).strip()
        assert prompt.startswith(PROMPT)
        assert not earlier or order.index(earlier) < own
    assert inputs_only(hour)


async def test_a_failed_piece_fails_the_call_and_cancels_the_rest(
    tmp_path: Path, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """The first piece the API refuses fails the call with its mapped error; pieces in flight are abandoned."""
    audio = write_recording(tmp_path, 600)
    backend = openai_backend_for(
        api, timeout_seconds=300, max_request_bytes=4_000_000, piece_seconds=100, piece_concurrency=3
    )
    backends.append(backend)
    api.enqueue(Fault.rate_limited(retry_after=7))
    api.set_default_fault(Fault.hung())
    async with asyncio.timeout(120):
        with pytest.raises(UpstreamRateLimited) as failed:
            await backend.transcribe(audio, WHISPER)
    assert failed.value.retry_after_seconds == 7
    assert 1 <= len(api.requests) <= 3
    assert inputs_only(audio)


async def test_a_call_cancelled_while_pieces_are_sent_leaves_no_piece_behind(
    tmp_path: Path, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """Cancelling a call while its pieces are being sent deletes every piece file before it returns."""
    audio = write_recording(tmp_path, 600)
    backend = openai_backend_for(api, max_request_bytes=4_000_000, piece_seconds=100, piece_concurrency=3)
    backends.append(backend)
    api.set_default_fault(Fault.hung())
    call = asyncio.create_task(backend.transcribe(audio, WHISPER))
    await asyncio.to_thread(api.wait_for_requests, 1, 60.0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert inputs_only(audio)


async def test_a_call_cancelled_mid_write_deletes_the_piece_once_written(
    tmp_path: Path, api: FakeOpenAIServer, backends: list[OpenAIBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a call while a piece is being written waits for that write, then deletes the file."""
    audio = write_recording(tmp_path, 600)
    backend = openai_backend_for(api, max_request_bytes=4_000_000, piece_seconds=100, piece_concurrency=1)
    backends.append(backend)
    writing, written = threading.Event(), threading.Event()

    def slow_encode(samples: npt.NDArray[np.float32], dst: Path) -> None:
        writing.set()
        time.sleep(0.5)
        encode_flac(samples, dst)
        written.set()

    monkeypatch.setattr(openai_api, "encode_flac", slow_encode)
    call = asyncio.create_task(backend.transcribe(audio, WHISPER))
    assert await asyncio.to_thread(writing.wait, 60.0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert written.is_set()
    assert api.requests == []
    assert inputs_only(audio)


async def test_a_wav_too_large_to_send_goes_whole_as_flac_when_that_fits(
    tmp_path: Path, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """A file over the request limit whose 16 kHz mono FLAC fits is sent whole, re-encoded, in one request."""
    upload = tmp_path / "stereo.wav"
    upload.write_bytes((DATA / "speech_en_stereo_44k.wav").read_bytes())
    whisper_input = tmp_path / "stereo.pcm"
    audio = AudioFile(str(upload), probe(upload, 60, whisper_input), str(whisper_input))
    backend = openai_backend_for(api, max_request_bytes=audio.info.size_bytes - 1)
    backends.append(backend)
    transcript = await backend.transcribe(audio, WHISPER)
    (request,) = api.requests
    assert (request.file_name or "").endswith(".flac")
    assert request.form["prompt"] == PROMPT
    assert audio_seconds(request.file_bytes) == pytest.approx(audio.info.duration, abs=0.05)
    assert transcript.text == describe_duration(request)
    assert inputs_only(audio)


async def test_a_long_recording_without_speech_sends_nothing(
    tmp_path: Path, api: FakeOpenAIServer, backends: list[OpenAIBackend]
) -> None:
    """A recording too large for one request in which nobody speaks gives an empty transcript without a request."""
    audio = write_recording(tmp_path, 900, spoken=False)
    backend = openai_backend_for(api)
    backends.append(backend)
    reported: list[tuple[float, float]] = []
    transcript = await backend.transcribe(audio, WHISPER, progress=lambda done, total: reported.append((done, total)))
    assert audio.info.size_bytes > MAX_BODY_BYTES
    assert api.requests == []
    assert transcript.text == ""
    assert transcript.segments == ()
    assert transcript.duration == audio.info.duration
    assert reported == [(audio.info.duration, audio.info.duration)]
    assert inputs_only(audio)

"""Cancellation: a client that cancels, times out or dies frees its slot and its file, and nothing it sent half of
is transcribed as if it were complete.

No test sleeps to let time pass: each waits, with a bound, for something it can observe (an upload's size, a file
leaving the disk, the admission count, a request reaching the loopback API, an engine reaching a segment).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

import service.core.transcriber as transcriber_module
from service.audio.probe import probe
from service.audio.store import Upload, UploadStore
from service.backends.local import LocalBackend
from service.domain import AudioInfo, BackendKind, Segment, SpokenBefore
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine, FasterWhisperModel
from service.threads import Stopped
from tests.conftest import DATA, MODEL_CACHE, REPO, RunningServer, StartServer, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.helpers import assert_has_words
from tests.test_bad_input import PCM_MONO_16K, SPEECH_WORDS, RecordingBackend, settle, speech_pcm, wait_until
from transcribe.v1 import transcribe_service_pb2 as pb

LOCAL = BackendKind.LOCAL
OPENAI_CONFIG = pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI)


async def test_settling_waits_for_the_calls_in_progress(start_server: StartServer) -> None:
    """Transcriber.settle reports an upload still arriving, and returns once its call has ended and deleted the
    file: a stopped server's handlers may run after the stop returns, and shutdown waits for them."""
    server = await start_server()
    hold = asyncio.Event()

    async def slow() -> AsyncIterator[pb.TranscribeStreamRequest]:
        yield pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())
        yield pb.TranscribeStreamRequest(audio_content=b"RIFF")
        await hold.wait()

    call = server.stub.TranscribeStream(slow(), timeout=60)
    try:
        await wait_until(lambda: len(server.store.files()) == 1, 10, "the upload is on disk")
        assert not await server.transcriber.settle(0.05)
    finally:
        call.cancel()
        hold.set()
    assert await server.transcriber.settle(10)
    assert server.store.files() == []


def capture_uploads(store: UploadStore) -> list[Upload]:
    """Record every Upload the store creates, to watch how many bytes the server has received."""
    uploads: list[Upload] = []
    create = store.new_upload

    def new_upload(max_bytes: int) -> Upload:
        upload = create(max_bytes)
        uploads.append(upload)
        return upload

    store.new_upload = new_upload  # type: ignore[method-assign]
    return uploads


async def received(uploads: list[Upload], before: int, count: int, size: int) -> None:
    """Wait until the server has `count` new uploads (after the first `before`) of `size` bytes each."""
    await wait_until(
        lambda: len(uploads) >= before + count and all(u.size >= size for u in uploads[before : before + count]),
        60,
        f"{count} upload(s) of {size} bytes received",
    )


async def within_a_second(server: RunningServer, kind: BackendKind) -> None:
    """The call's file is gone and its admission slot is free within one second."""
    await wait_until(lambda: server.store.files() == [], 1.0, "the upload file is deleted")
    await wait_until(
        lambda: server.transcriber.gates[kind].in_flight == 0 and server.transcriber.upload_gate.in_flight == 0,
        1.0,
        "the admission slots are free",
    )


async def late_release(server: RunningServer, kind: BackendKind) -> str | None:
    """What was still held one second later (see within_a_second), or None; for checking after settle()."""
    try:
        await within_a_second(server, kind)
    except AssertionError as late:
        return str(late)
    return None


# -- (a) a client that cancels mid-upload --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "data"),
    [
        pytest.param(pb.TranscriptionConfig(), (DATA / "speech_en.wav").read_bytes(), id="wav"),
        pytest.param(PCM_MONO_16K, speech_pcm().tobytes(), id="headerless-pcm"),
    ],
)
async def test_a_cancelled_upload_frees_its_slot_and_is_never_transcribed(
    config: pb.TranscriptionConfig, data: bytes, start_server: StartServer, local_backend: LocalBackend[Any]
) -> None:
    """Cancelling mid-upload deletes the file and frees the slot within a second, and nothing is transcribed."""
    backend = RecordingBackend(local_backend)
    server = await start_server(backends={LOCAL: backend})
    uploads = capture_uploads(server.store)
    chunk, sent = 8000, 4
    for _ in range(3):  # the race this guards against is decided per call; three calls make a miss unlikely
        forever = asyncio.Event()

        async def requests(event: asyncio.Event = forever) -> AsyncIterator[pb.TranscribeStreamRequest]:
            yield pb.TranscribeStreamRequest(config=config)
            for index in range(sent):
                yield pb.TranscribeStreamRequest(audio_content=data[index * chunk : (index + 1) * chunk])
            await event.wait()

        before = len(uploads)
        call = server.stub.TranscribeStream(requests(), timeout=60)
        await received(uploads, before, 1, sent * chunk)
        assert server.transcriber.upload_gate.in_flight == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        late = await late_release(server, LOCAL)
        await settle(server.transcriber)  # so that a failure below leaves nothing running for the teardown
        assert backend.calls == [], "a cancelled upload reached the backend"
        assert late is None, late


async def test_a_cancel_while_the_upload_is_probed_stops_the_probe_and_leaves_no_file(
    start_server: StartServer, local_backend: LocalBackend[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call cancelled while its finished upload is being probed: the probe ends early, its files go, no transcription.

    Probing runs in a thread, which a cancel cannot interrupt; the call waits for it, so nothing the probe writes
    (here the Whisper input) appears on disk after the call deleted its files."""
    backend = RecordingBackend(local_backend)
    server = await start_server(backends={LOCAL: backend})
    entered, release = threading.Event(), threading.Event()
    outcome: list[type[BaseException] | None] = []

    def held_probe(path: Path, max_seconds: float, whisper_input: Path, stop: threading.Event) -> AudioInfo:
        entered.set()
        release.wait(60)
        try:
            info = probe(path, max_seconds, whisper_input, stop)
        except BaseException as error:
            outcome.append(type(error))
            raise
        outcome.append(None)
        return info

    monkeypatch.setattr(transcriber_module, "probe", held_probe)
    call = server.stub.TranscribeStream(
        iter(
            [
                pb.TranscribeStreamRequest(config=PCM_MONO_16K),
                pb.TranscribeStreamRequest(audio_content=speech_pcm().tobytes()),
            ]
        )
    )
    try:
        assert await asyncio.to_thread(entered.wait, 60), "the upload was never probed"
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        release.set()
    late = await late_release(server, LOCAL)
    await settle(server.transcriber)
    assert outcome == [Stopped], "the probe decoded on after the cancel"
    assert backend.calls == []
    assert late is None, late


# -- (b) the API backend: a deadline or a cancel during the upstream call ------------------------------------------


@pytest.fixture
def api(fake_openai: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The loopback API, reset before and after the test."""
    fake_openai.clear_requests()
    fake_openai.clear_faults()
    yield fake_openai
    fake_openai.clear_faults()


async def one_worker_api_server(start_server: StartServer, api: FakeOpenAIServer) -> RunningServer:
    """A server whose API backend has one worker and a long upstream timeout, so only an abort frees it early."""
    return await start_server(
        backends={BackendKind.OPENAI: openai_backend_for(api, timeout_seconds=20.0, workers=1)},
        default_backend="openai",
        openai_api_key="test-key",
    )


async def next_call_reaches_the_api(server: RunningServer, api: FakeOpenAIServer) -> None:
    """With the only worker freed, a second call reaches the API and succeeds."""
    before = len(api.requests)
    follow_up = server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI_CONFIG), timeout=30
    )
    try:
        # Bounded well below the 20 s upstream timeout: only an aborted first request frees the worker in time.
        await asyncio.to_thread(api.wait_for_requests, before + 1, 8.0)
        response = await follow_up
    finally:
        follow_up.cancel()
    assert response.transcript.text


async def test_a_deadline_during_a_slow_api_call_aborts_it(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """A deadline that expires while the API is slow is DEADLINE_EXCEEDED; file, slot and upstream request go."""
    server = await one_worker_api_server(start_server, api)
    # Slower than the backend's 20 s timeout: only the caller's deadline can end this request early.
    api.enqueue(Fault.slow(30))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Transcribe(
            pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI_CONFIG), timeout=1
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await within_a_second(server, BackendKind.OPENAI)
    await asyncio.to_thread(api.wait_for_requests, 1)
    await next_call_reaches_the_api(server, api)


async def test_a_cancel_during_an_api_call_aborts_it(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """A client cancelling during the upstream call aborts that request, so the worker serves the next call."""
    server = await one_worker_api_server(start_server, api)
    api.enqueue(Fault.hung())
    call = server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI_CONFIG)
    )
    await asyncio.to_thread(api.wait_for_requests, 1, 30.0)
    call.cancel()
    await within_a_second(server, BackendKind.OPENAI)
    await next_call_reaches_the_api(server, api)


# -- (c) local transcription stops at the next segment boundary ----------------------------------------------------


class SteppingEngine:
    """The real faster-whisper engine, paused after its first segment so a test can cancel at a known point."""

    name = "stepping faster-whisper"

    def __init__(self, inner: FasterWhisperEngine) -> None:
        self.inner = inner
        self.first_segment = threading.Event()
        self.resume = threading.Event()
        self.finished = threading.Event()
        self.request: EngineRequest | None = None
        self.produced = 0
        self.exhausted = False
        self.returned = -1

    def load(self, spec: ModelSpec) -> FasterWhisperModel:
        """Load with the real engine."""
        return self.inner.load(spec)

    def detect_language(self, model: FasterWhisperModel, audio: Samples) -> tuple[str, float]:
        """As the real engine."""
        return self.inner.detect_language(model, audio)

    def transcribe_utterance(
        self, model: FasterWhisperModel, audio: Samples, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """As the real engine."""
        return self.inner.transcribe_utterance(model, audio, request, before)

    def transcribe_clips(
        self, model: FasterWhisperModel, audio: Samples, clips: Sequence[Clip], request: EngineRequest
    ) -> tuple[Segment, ...]:
        """As the real engine (these tests transcribe whole)."""
        return self.inner.transcribe_clips(model, audio, clips, request)

    def transcribe(self, model: FasterWhisperModel, audio: Samples, request: EngineRequest) -> EngineResult:
        """Transcribe with the real engine, whose WhisperModel yields through `_segments`."""
        self.request = request
        stepping = FasterWhisperModel(_SteppingModel(model.model, self))
        try:
            result = self.inner.transcribe(stepping, audio, request)
            self.returned = len(result.segments)
            return result
        finally:
            self.finished.set()

    def segments(self, segments: Iterator[Any]) -> Iterator[Any]:
        """Count segments as Whisper decodes them; pause after the first until the test resumes."""
        for segment in segments:
            self.produced += 1
            yield segment
            if self.produced == 1:
                self.first_segment.set()
                self.resume.wait(60)
        self.exhausted = True


class _SteppingModel:
    """A WhisperModel whose segment generator goes through SteppingEngine.segments."""

    def __init__(self, inner: Any, engine: SteppingEngine) -> None:
        self._inner = inner
        self._engine = engine

    def transcribe(self, audio: Any, **options: Any) -> tuple[Iterator[Any], Any]:
        segments, info = self._inner.transcribe(audio, **options)
        return self._engine.segments(segments), info


@pytest.fixture
async def stepping() -> AsyncIterator[tuple[SteppingEngine, LocalBackend[Any]]]:
    """A one-worker local backend on the stepping engine (sequential decoding, so segments come one by one)."""
    engine = SteppingEngine(FasterWhisperEngine(cache_dir=MODEL_CACHE, cpu_threads=1, num_workers=1))
    backend = LocalBackend(
        engine=engine,
        specs=local_model_specs("tiny.en", MODEL_CACHE),
        default_model="tiny.en",
        workers=1,
        batch_size=1,
    )
    await backend.start()
    yield engine, backend
    engine.resume.set()
    await backend.aclose()


async def test_a_cancelled_local_transcription_stops_at_the_next_segment(
    start_server: StartServer, stepping: tuple[SteppingEngine, LocalBackend[Any]]
) -> None:
    """Cancelling a long local transcription sets the engine's cancel flag and it stops after one more segment."""
    engine, backend = stepping
    server = await start_server(backends={LOCAL: backend})
    call = server.stub.Transcribe(pb.TranscribeRequest(content=(DATA / "speech_en_60s.ogg").read_bytes()))
    assert await asyncio.to_thread(engine.first_segment.wait, 120), "the engine produced no segment"
    call.cancel()
    await within_a_second(server, LOCAL)
    assert engine.request is not None
    assert engine.request.cancelled is not None
    await wait_until(engine.request.cancelled.is_set, 1.0, "the engine request is flagged cancelled")
    engine.resume.set()
    assert await asyncio.to_thread(engine.finished.wait, 60), "the engine did not return"
    assert not engine.exhausted, "the engine decoded the whole file after the cancel"
    assert engine.produced <= 2, "more than one segment was decoded after the cancel"
    assert engine.returned == 1
    # The worker is free again: the next call is served.
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes()), timeout=120
    )
    assert_has_words(response.transcript.text, SPEECH_WORDS)


# -- (d) a client process killed mid-upload ------------------------------------------------------------------------

CLIENT = """
import sys, time
import grpc
from transcribe.v1 import transcribe_service_pb2 as pb, transcribe_service_pb2_grpc as pb_grpc

target, chunk, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pcm = sys.stdin.buffer.read()
config = pb.TranscriptionConfig(explicit_decoding_config=pb.ExplicitDecodingConfig(
    encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=1))

def requests():
    yield pb.TranscribeStreamRequest(config=config)
    for index in range(count):
        yield pb.TranscribeStreamRequest(audio_content=pcm[index * chunk:(index + 1) * chunk])
    time.sleep(3600)  # never half-closes: the test kills this process mid-upload

pb_grpc.TranscribeServiceStub(grpc.insecure_channel(target)).TranscribeStream(requests())
"""


async def test_a_client_killed_mid_upload_is_never_transcribed(
    start_server: StartServer, local_backend: LocalBackend[Any]
) -> None:
    """Clients killed with SIGKILL mid-upload of valid PCM: nothing is transcribed and every file goes within 1 s."""
    backend = RecordingBackend(local_backend)
    server = await start_server(backends={LOCAL: backend})
    uploads = capture_uploads(server.store)
    clients, chunk, count = 6, 4000, 10  # each race is decided per call; six independent clients make a miss rare
    pcm = speech_pcm().tobytes()
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            server.target,
            str(chunk),
            str(count),
            stdin=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(clients)
    ]
    try:
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(pcm)
            process.stdin.close()
        await received(uploads, 0, clients, chunk * count)
        assert server.transcriber.upload_gate.in_flight == clients
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
        for process in processes:
            await process.wait()
    late = await late_release(server, LOCAL)
    await settle(server.transcriber)  # so that a failure below leaves nothing running for the teardown
    assert backend.calls == [], f"{len(backend.calls)} of {clients} cut uploads were transcribed"
    assert late is None, late

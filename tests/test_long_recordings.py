"""Recordings of any length: windowed local transcription, fair shared workers, progress and admission by stage."""

from __future__ import annotations

import asyncio
import difflib
import re
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.audio.probe import probe
from service.backends.local import LocalBackend
from service.backends.workers import FairWorkerPool
from service.domain import AudioFile, BackendKind, Segment, SpokenBefore, TranscriptionOptions
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine, FasterWhisperModel
from tests.conftest import DATA, MODEL_CACHE, Fixture, StartServer
from tests.test_bad_input import wait_until
from transcribe.v1 import transcribe_service_pb2 as pb

LONG = "speech_en_60s.ogg"


class SpyEngine:
    """The real faster-whisper engine, counting how many clip batches run at once."""

    name = "faster-whisper"

    def __init__(self, inner: FasterWhisperEngine) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.batches = 0

    def load(self, spec: ModelSpec) -> FasterWhisperModel:
        """Load with the real engine."""
        return self.inner.load(spec)

    def transcribe(self, model: FasterWhisperModel, audio: Samples, request: EngineRequest) -> EngineResult:
        """As the real engine."""
        return self.inner.transcribe(model, audio, request)

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
        """As the real engine, noting the overlap with other batches."""
        with self._lock:
            self.running += 1
            self.batches += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return self.inner.transcribe_clips(model, audio, clips, request)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture(scope="module")
async def windowed() -> AsyncIterator[tuple[SpyEngine, LocalBackend[Any]]]:
    """A two-worker local backend that windows everything: 20 s VAD windows, two 30 s clips per batch."""
    engine = SpyEngine(FasterWhisperEngine(cache_dir=MODEL_CACHE, cpu_threads=1, num_workers=2))
    backend = LocalBackend(
        engine=engine,
        specs=local_model_specs("tiny.en", MODEL_CACHE),
        default_model="tiny.en",
        workers=2,
        batch_size=2,
        windowed_min_seconds=0,
        vad_window_seconds=20.0,
    )
    await backend.start()
    yield engine, backend
    await backend.aclose()


def audio_file(source: Path, folder: Path) -> AudioFile:
    """A probed copy of a fixture with its decoded 16 kHz input, as the core hands backends."""
    copy = folder / source.name
    copy.write_bytes(source.read_bytes())
    decoded = folder / "input.s16"
    info = probe(copy, 3600.0, decoded)
    return AudioFile(path=str(copy), info=info, whisper_input=str(decoded))


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    return re.findall(r"[a-z']+", text.lower())


async def test_windowed_transcription_keeps_every_word_once_and_in_order(
    windowed: tuple[SpyEngine, LocalBackend[Any]], spoken: dict[str, Fixture], tmp_path: Path
) -> None:
    """Across VAD windows and clip batches, the words come out in the spoken order, none lost or repeated."""
    engine, backend = windowed
    fixture = spoken[LONG]
    transcript = await backend.transcribe(audio_file(fixture.path, tmp_path), TranscriptionOptions())
    assert engine.batches >= 2, "the recording should span several batches"
    expected, got = words(fixture.text), words(transcript.text)
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    assert matcher.ratio() > 0.9, (expected, got)
    # Misheard words are substitutions; a word lost or repeated at a seam would be a deletion or an insertion.
    changes = [(tag, expected[i1:i2], got[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    lost_or_added = [(tag, a, b) for tag, a, b in changes if len(a) != len(b)]
    assert lost_or_added == [], changes


async def test_windowed_offsets_are_continuous_and_within_the_recording(
    windowed: tuple[SpyEngine, LocalBackend[Any]], spoken: dict[str, Fixture], tmp_path: Path
) -> None:
    """Segment and word offsets increase across windows and stay inside the recording."""
    _, backend = windowed
    fixture = spoken[LONG]
    options = TranscriptionOptions(word_timestamps=True)
    transcript = await backend.transcribe(audio_file(fixture.path, tmp_path), options)
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts)
    assert all(0.0 <= s.start <= s.end <= fixture.duration + 0.5 for s in transcript.segments)
    word_starts = [word.start for segment in transcript.segments for word in segment.words]
    assert word_starts == sorted(word_starts)
    assert len(word_starts) > 50
    assert transcript.segments[-1].end > fixture.duration - 10, "the last window's speech is there"


async def test_a_lone_recording_runs_on_every_worker_and_reports_progress(
    windowed: tuple[SpyEngine, LocalBackend[Any]], spoken: dict[str, Fixture], tmp_path: Path
) -> None:
    """With no other call waiting, two batches of one recording run at once; progress climbs to the total."""
    engine, backend = windowed
    engine.most_at_once = 0
    seen: list[tuple[float, float]] = []
    audio = audio_file(spoken[LONG].path, tmp_path)
    await backend.transcribe(audio, TranscriptionOptions(), progress=lambda done, total: seen.append((done, total)))
    assert engine.most_at_once == 2
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (audio.info.duration, audio.info.duration)
    assert len(seen) >= 3, "progress is reported batch by batch"


async def test_silence_yields_no_text_through_windows(
    windowed: tuple[SpyEngine, LocalBackend[Any]], tmp_path: Path
) -> None:
    """An hour of silence is scored window by window and transcribed as nothing."""
    _, backend = windowed
    transcript = await backend.transcribe(audio_file(DATA / "silence_1h.flac", tmp_path), TranscriptionOptions())
    assert transcript.text == ""
    assert transcript.segments == ()


async def test_the_fair_pool_serves_jobs_in_turn() -> None:
    """Two jobs with queued tasks on one worker alternate instead of running one job to its end."""
    pool = FairWorkerPool(1, "test")
    order: list[str] = []
    gate = threading.Event()
    first, second = pool.job(), pool.job()
    try:
        blocker = asyncio.ensure_future(first.run(gate.wait, 10))
        await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(first.run(order.append, f"a{i}")) for i in range(3)]
        tasks += [asyncio.ensure_future(second.run(order.append, f"b{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, *tasks)
    finally:
        first.close()
        second.close()
        pool.shutdown()
    assert order[:2] in (["a0", "b0"], ["b0", "a0"])
    assert order[2:4] in (["a1", "b1"], ["b1", "a1"])


async def test_an_urgent_job_is_served_before_jobs_queued_earlier() -> None:
    """A live final (an urgent job) starts on the next free worker ahead of interims queued before it."""
    pool = FairWorkerPool(1, "test")
    order: list[str] = []
    gate, started = threading.Event(), threading.Event()
    blocking, interim, final = pool.job(), pool.job(), pool.job(urgent=True)

    def block() -> None:
        started.set()
        gate.wait(10)

    try:
        blocker = asyncio.ensure_future(blocking.run(block))
        assert await asyncio.to_thread(started.wait, 10)
        tasks = [asyncio.ensure_future(interim.run(order.append, f"interim{i}")) for i in range(2)]
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(final.run(order.append, "final")))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(blocker, *tasks)
    finally:
        for job in (blocking, interim, final):
            job.close()
        pool.shutdown()
    assert order == ["final", "interim0", "interim1"]


async def test_after_runs_once_the_result_is_handed_over_and_before_the_next_task() -> None:
    """A job's housekeeping (a live final's giving memory back) never delays its caller, and the worker does it
    before it takes another task."""
    pool = FairWorkerPool(1, "test")
    order: list[str] = []
    handed = threading.Event()

    def tidy() -> None:
        order.append("tidy" if handed.wait(10) else "tidy before the result was handed over")

    tidied, other = pool.job(after=tidy), pool.job()
    try:
        first = asyncio.ensure_future(tidied.run(order.append, "task"))
        second = asyncio.ensure_future(other.run(order.append, "next"))
        await first
        handed.set()
        await second
    finally:
        tidied.close()
        other.close()
        pool.shutdown()
    assert order == ["task", "tidy", "next"]


async def test_a_closed_job_drops_the_tasks_it_has_not_started() -> None:
    """Closing a job cancels its queued tasks; they never run."""
    pool = FairWorkerPool(1, "test")
    gate, ran = threading.Event(), list[str]()
    job = pool.job()
    try:
        blocker = asyncio.ensure_future(job.run(gate.wait, 10))
        queued = asyncio.ensure_future(job.run(ran.append, "late"))
        await asyncio.sleep(0.05)
        job.close()
        gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await queued
    finally:
        pool.shutdown()
    assert ran == []


async def test_slow_uploaders_do_not_take_places_meant_for_ready_work(start_server: StartServer) -> None:
    """Ten uploads still in progress leave the local backend's places free: a complete request still succeeds."""
    server = await start_server(local_queue_size=0)
    assert server.transcriber.gates[BackendKind.LOCAL].capacity == 2
    hold = asyncio.Event()
    config = pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())

    async def slow() -> AsyncIterator[pb.TranscribeStreamRequest]:
        yield config
        yield pb.TranscribeStreamRequest(audio_content=b"RIFF")
        await hold.wait()

    uploads = [server.stub.TranscribeStream(slow(), timeout=60) for _ in range(10)]
    try:
        await wait_until(lambda: server.transcriber.upload_gate.in_flight == 10, 10, "ten uploads are in progress")
        response = await server.stub.Transcribe(
            pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes()), timeout=60
        )
        assert "fox" in response.transcript.text.lower()
    finally:
        for call in uploads:
            call.cancel()
        hold.set()
    for call in uploads:
        with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)):
            await call


def test_the_catalogue_reads_nothing_from_disk_until_a_model_is_used(tmp_path: Path) -> None:
    """Building the model list joins no model: the multilingual model is prepared at its first use."""
    specs = local_model_specs("tiny.en", tmp_path)
    assert set(specs) == {"tiny.en", "base"}
    assert list(tmp_path.iterdir()) == []

"""The local backend: Whisper models in this process; long recordings go through in windows on shared workers."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Generic, ParamSpec, TypeVar

import numpy as np

from service.audio.decode import WHISPER_SAMPLE_RATE, read_whisper_input
from service.audio.speech import VAD_WINDOW_SECONDS, Span, cover, group_spans, score_window, speech_spans, windows
from service.backends.base import SegmentSink, finished_segments
from service.backends.workers import FairWorkerPool, WorkerJob
from service.domain import (
    AudioFile,
    BackendKind,
    ModelDescription,
    Progress,
    Recognition,
    Segment,
    SpokenBefore,
    Task,
    Transcript,
    TranscriptionOptions,
    primary_language,
)
from service.engines.base import Clip, EngineRequest, EngineResult, LocalEngine, ModelSpec, ModelT, Samples
from service.engines.languages import whisper_languages
from service.engines.pool import ModelPool
from service.errors import BackendNotReady, DeadlineTooShort, FieldViolation, InvalidConfig, ModelNotFound
from service.memory import release_free_memory

log = logging.getLogger(__name__)
_JOIN_SECONDS = 10.0
"""How long shutdown waits for the decodes still running (a speculative final dropped, a cancelled file's current
segment) before it lets the process exit with a worker inside the engine."""
P = ParamSpec("P")
R = TypeVar("R")

CLIP_SECONDS = 30.0
"""Whisper's window: the longest clip an engine is given."""


class LocalBackend(Generic[ModelT]):
    """Transcribes with Whisper models in this process; the event loop only awaits the worker threads.

    A recording shorter than `windowed_min_seconds` is transcribed whole in one task. A longer one is read from disk
    in windows: voice activity is scored per 64 s window, speech is cut into clips of at most 30 s, and each batch
    of clips is one task, so memory stays flat whatever the length. Tasks of every call share the workers in turn:
    a lone recording runs on all of them at once, concurrent ones each get a fair share.
    """

    kind = BackendKind.LOCAL
    supports_interim = True

    def __init__(
        self,
        *,
        engine: LocalEngine[ModelT],
        specs: dict[str, ModelSpec],
        default_model: str,
        workers: int,
        max_loaded: int = 2,
        idle_seconds: float = 900.0,
        batch_size: int = 4,
        windowed_min_seconds: float = 60.0,
        vad_window_seconds: float = VAD_WINDOW_SECONDS,
        live_workers: int = 2,
    ) -> None:
        self._engine = engine
        self.default_model = default_model
        self.pool: ModelPool[ModelT] = ModelPool(engine, specs, max_loaded=max_loaded, idle_seconds=idle_seconds)
        self.workers = workers
        self._batch_size = batch_size
        self._windowed_min_seconds = windowed_min_seconds
        self._vad_window_seconds = vad_window_seconds
        self._threads = FairWorkerPool(workers, "local")
        self._live_threads = FairWorkerPool(live_workers, "live")
        self._ready = False
        self._reaper: asyncio.Task[None] | None = None
        self._idle_seconds = idle_seconds

    async def start(self) -> None:
        """Load the default model once so the first request does not pay for it."""
        if self._ready:
            return
        job = self._threads.job()
        try:
            await job.run(self._warm)
        finally:
            job.close()
        self._ready = True
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle_models())

    def _warm(self) -> None:
        with self.pool.using(self.default_model):
            pass

    async def _reap_idle_models(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._idle_seconds / 4))
            await asyncio.to_thread(self.pool.unload_idle)

    def check(self, options: TranscriptionOptions) -> None:
        """Reject unknown models and languages or tasks the chosen model cannot do."""
        spec = self._spec(options.model)
        language = primary_language(options.language)
        if language is not None and language not in whisper_languages():
            raise InvalidConfig(
                f"language {options.language!r} is not one Whisper understands",
                violations=[FieldViolation("config.language_code", "is not a language Whisper understands")],
            )
        if not spec.multilingual:
            if language not in (None, "en"):
                raise InvalidConfig(
                    f"model {spec.name} understands only English",
                    violations=[FieldViolation("config.language_code", f"{spec.name} understands only English")],
                )
            if options.task is Task.TRANSLATE:
                raise InvalidConfig(
                    f"model {spec.name} cannot translate; use a multilingual model",
                    violations=[FieldViolation("config.task", f"{spec.name} cannot translate")],
                )

    def _engine_request(
        self, options: TranscriptionOptions, prompt: str, *, interim: bool = False
    ) -> tuple[ModelSpec, EngineRequest]:
        """The model and the engine's request for options; refused while the default model is still loading."""
        if not self._ready:
            raise BackendNotReady("the local backend is still loading its model")
        spec = self._spec(options.model)
        request = EngineRequest(
            language=primary_language(options.language) or ("en" if not spec.multilingual else None),
            task=options.task,
            prompt=prompt,
            temperature=options.temperature,
            word_timestamps=options.word_timestamps and not interim,
            quick=interim,
        )
        return spec, request

    def _spec(self, model: str) -> ModelSpec:
        name = model or self.default_model
        spec = self.pool.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.pool.specs))
            raise ModelNotFound(
                f"model {name!r} is not served by the local backend; available: {known}",
                metadata={"model": name, "available": known},
            )
        return spec

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """Transcribe on the shared workers; the model is loaded there if needed."""
        spec, request = self._engine_request(options, options.prompt)
        path, seconds = Path(audio.whisper_input), audio.info.duration
        job = _Job(self._threads.job(), spec.name, path, request, deadline)
        try:
            if seconds < self._windowed_min_seconds or self._batch_size < 2:
                result = await job.run(self._transcribe_whole, job)
            else:
                result = await self._transcribe_windows(job, seconds, progress, finished_segments.get())
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            job.close()
        if progress is not None:
            progress(seconds, seconds)
        return Transcript(
            text=result.text,
            language=result.language,
            language_probability=result.language_probability,
            duration=seconds,
            backend=BackendKind.LOCAL,
            model=spec.name,
            segments=result.segments,
        )

    async def _transcribe_windows(
        self, job: _Job, seconds: float, progress: Progress | None, report: SegmentSink | None
    ) -> EngineResult:
        windowed = windows(seconds, self._vad_window_seconds)
        scored = await asyncio.gather(*(job.run(self._score_speech, job, window) for window in windowed))
        clips = group_spans(speech_spans(np.concatenate(scored), seconds), CLIP_SECONDS)
        if not clips:
            return EngineResult(segments=(), language=job.request.language or "", language_probability=0.0)
        language, probability = job.request.language, 1.0
        if language is None:
            language, probability = await job.run(self._detect_language, job, clips[0])
        request = job.with_language(language or "en")
        batches = _batches(clips, self._batch_size, self.workers)
        spans = cover([Span(b[0].start, b[-1].end) for b in batches], seconds)
        done = 0.0
        finished: list[tuple[Segment, ...] | None] = [None] * len(batches)
        reported = 0

        async def run_batch(index: int, batch: list[Span], span: Span) -> tuple[Segment, ...]:
            nonlocal done, reported
            segments = await job.run(self._transcribe_batch, job, request, batch)
            done += span.duration
            if progress is not None:
                progress(done, seconds)
            finished[index] = segments
            while report is not None and reported < len(finished) and (ready := finished[reported]) is not None:
                report(ready)
                reported += 1
            return segments

        batched = enumerate(zip(batches, spans, strict=True))
        results = await asyncio.gather(*(run_batch(i, b, s) for i, (b, s) in batched))
        return EngineResult(
            segments=tuple(segment for batch in results for segment in batch),
            language=language or "en",
            language_probability=probability,
        )

    def _transcribe_whole(self, job: _Job) -> EngineResult:
        job.check_deadline()
        samples = read_whisper_input(job.path)
        with job.model(self.pool) as model:
            return self._engine.transcribe(model, samples, job.request)

    def _score_speech(self, job: _Job, window: Span) -> np.ndarray:
        job.check_deadline()
        return score_window(job.path, window)

    def _detect_language(self, job: _Job, clip: Span) -> tuple[str, float]:
        samples = read_whisper_input(job.path, clip.start, clip.end)
        with job.model(self.pool) as model:
            return self._engine.detect_language(model, samples)

    def _transcribe_batch(self, job: _Job, request: EngineRequest, batch: Sequence[Span]) -> tuple[Segment, ...]:
        """Read the batch's clips back to back (never the silence between them), transcribe, and map times back."""
        if job.cancelled():
            return ()
        pieces = [read_whisper_input(job.path, clip.start, clip.end) for clip in batch]
        starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]]) / WHISPER_SAMPLE_RATE
        clips = [Clip(float(s), float(s) + len(p) / WHISPER_SAMPLE_RATE) for s, p in zip(starts, pieces, strict=True)]
        with job.model(self.pool) as model:
            segments = self._engine.transcribe_clips(model, np.concatenate(pieces), clips, request)
        shifted = []
        for segment in segments:
            index = max(0, bisect.bisect_right(starts.tolist(), segment.start + 1e-6) - 1)
            shifted.append(segment.shifted(batch[index].start - float(starts[index])))
        return tuple(shifted)

    async def recognize(
        self,
        samples: Samples,
        options: TranscriptionOptions,
        *,
        interim: bool,
        prompt: str,
        scratch: Path,
        before: SpokenBefore | None = None,
    ) -> Recognition:
        """One utterance of a live stream, on the live workers: greedy for interim results, the full beam for finals.
        After a final the worker gives the heap's free pages back, so a long stream's memory stays flat. Cancelled
        while it runs (a speculative final when speech resumes), the decode stops at the engine's next check."""
        spec, request = self._engine_request(options, prompt, interim=interim)
        cancelled = threading.Event()
        job = self._live_threads.job(urgent=not interim, after=None if interim else release_free_memory)
        try:
            return await job.run(
                self._recognize_sync, spec.name, samples, replace(request, cancelled=cancelled), before
            )
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            job.close()

    def _recognize_sync(
        self, name: str, samples: Samples, request: EngineRequest, before: SpokenBefore | None
    ) -> Recognition:
        with self.pool.using(name) as model:
            result = self._engine.transcribe_utterance(model, samples, request, before)
        return Recognition(result.segments, result.language, result.language_probability)

    def models(self) -> list[ModelDescription]:
        """Every configured local model and whether it is loaded."""
        return [
            ModelDescription(
                name=spec.name,
                backend=BackendKind.LOCAL,
                engine=self._engine.name,
                loaded=self.pool.is_loaded(spec.name),
                multilingual=spec.multilingual,
                is_default=spec.name == self.default_model,
                load_seconds=self.pool.load_seconds.get(spec.name),
            )
            for spec in self.pool.specs.values()
        ]

    async def aclose(self) -> None:
        """Stop the idle reaper, abandon queued work and drop the models."""
        if self._reaper is not None:
            self._reaper.cancel()
        self._ready = False
        self._threads.shutdown()
        self._live_threads.shutdown()
        for pool in (self._threads, self._live_threads):
            if not await asyncio.to_thread(pool.join, _JOIN_SECONDS):
                log.warning("a %s worker was still decoding at shutdown", pool.name)
        self.pool.clear()


def _batches(clips: list[Span], most: int, workers: int) -> list[list[Span]]:
    """Clips in consecutive batches of at most `most`, as many batches as a multiple of the workers allows, sized
    evenly, so a lone recording keeps every worker busy to the end."""
    count = -(-len(clips) // most)
    count = min(len(clips), -(-count // workers) * workers)
    size = -(-len(clips) // count)
    return [clips[i : i + size] for i in range(0, len(clips), size)]


class _Job:
    """One call's work on the shared workers: its audio, options, deadline and cancellation."""

    def __init__(self, job: WorkerJob, model: str, path: Path, request: EngineRequest, deadline: float | None) -> None:
        self._job = job
        self._model = model
        self.path = path
        self.request = request
        self._deadline = deadline
        self._cancelled = threading.Event()
        self.request = replace(request, cancelled=self._cancelled)

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._job.run(fn, *args, **kwargs)

    def with_language(self, language: str) -> EngineRequest:
        return replace(self.request, language=language)

    def check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise DeadlineTooShort("the deadline passed while the call waited for a worker")

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._job.close()

    def close(self) -> None:
        self._job.close()

    def model(self, pool: ModelPool[ModelT]) -> AbstractContextManager[ModelT]:
        return pool.using(self._model)

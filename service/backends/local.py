"""The local backend: Whisper models in this process, on a bounded thread pool, via a pluggable engine."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from service.audio.decode import read_whisper_input
from service.domain import (
    AudioFile,
    BackendKind,
    ModelDescription,
    Segment,
    Task,
    Transcript,
    TranscriptionOptions,
    primary_language,
)
from service.errors import BackendNotReady, DeadlineTooShort, FieldViolation, InvalidConfig, ModelNotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

# Codes Whisper knows (the multilingual models' language tokens).
WHISPER_LANGUAGES = frozenset(
    [
        "en",
        "zh",
        "de",
        "es",
        "ru",
        "ko",
        "fr",
        "ja",
        "pt",
        "tr",
        "pl",
        "ca",
        "nl",
        "ar",
        "sv",
        "it",
        "id",
        "hi",
        "fi",
        "vi",
        "he",
        "uk",
        "el",
        "ms",
        "cs",
        "ro",
        "da",
        "hu",
        "ta",
        "no",
        "th",
        "ur",
        "hr",
        "bg",
        "lt",
        "la",
        "mi",
        "ml",
        "cy",
        "sk",
        "te",
        "fa",
        "lv",
        "bn",
        "sr",
        "az",
        "sl",
        "kn",
        "et",
        "mk",
        "br",
        "eu",
        "is",
        "hy",
        "ne",
        "mn",
        "bs",
        "kk",
        "sq",
        "sw",
        "gl",
        "mr",
        "pa",
        "si",
        "km",
        "sn",
        "yo",
        "so",
        "af",
        "oc",
        "ka",
        "be",
        "tg",
        "sd",
        "gu",
        "am",
        "yi",
        "lo",
        "uz",
        "fo",
        "ht",
        "ps",
        "tk",
        "nn",
        "mt",
        "sa",
        "lb",
        "my",
        "bo",
        "tl",
        "mg",
        "as",
        "tt",
        "haw",
        "ln",
        "ha",
        "ba",
        "jw",
        "su",
        "yue",
    ]
)


@dataclass(frozen=True)
class ModelSpec:
    """A model the local backend can serve: its name, where it comes from and what it understands."""

    name: str
    source: str
    """A model name the engine's own loader resolves, or a file or folder path."""
    multilingual: bool
    ct2_dir: Path | None = None
    """The CTranslate2 folder of a bundled model (converted for openai-whisper)."""


@dataclass(frozen=True)
class EngineRequest:
    """What an engine needs for one transcription."""

    language: str | None
    task: Task
    prompt: str
    temperature: float | None
    word_timestamps: bool
    cancelled: threading.Event | None = None
    """Set when the caller has gone; engines that can stop between segments do."""


@dataclass(frozen=True)
class EngineResult:
    """What an engine returns: segments and the language it heard."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float


class LocalEngine(Protocol):
    """A Whisper implementation: loads a model and transcribes 16 kHz mono float32 audio."""

    name: str

    def load(self, spec: ModelSpec) -> object:
        """Load a model into memory; called in a worker thread."""
        ...

    def transcribe(self, model: object, audio: npt.NDArray[np.float32], request: EngineRequest) -> EngineResult:
        """Transcribe with a loaded model; called in a worker thread."""
        ...


class ModelPool:
    """Loads models lazily, shares them across requests, unloads idle ones and caps how many stay."""

    def __init__(
        self,
        engine: LocalEngine,
        specs: dict[str, ModelSpec],
        max_loaded: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.specs = specs
        self._max_loaded = max_loaded
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in specs}
        self._loaded: dict[str, object] = {}
        self._last_used: dict[str, float] = {}
        self._in_use: dict[str, int] = {}
        self.load_seconds: dict[str, float] = {}

    def is_loaded(self, name: str) -> bool:
        """Whether the model is in memory now."""
        return name in self._loaded

    def acquire(self, name: str) -> object:
        """The loaded model, loading it first if needed; pair with release()."""
        with self._loading[name]:
            with self._lock:
                model = self._loaded.get(name)
                if model is not None:
                    self._mark_used(name, +1)
                    return model
            started = time.perf_counter()
            model = self._engine.load(self.specs[name])
            with self._lock:
                self.load_seconds[name] = time.perf_counter() - started
                self._loaded[name] = model
                self._mark_used(name, +1)
                self._evict_over_cap()
            log.info("loaded model %s in %.2fs", name, self.load_seconds[name])
            return model

    def release(self, name: str) -> None:
        """Hand a model back after a transcription."""
        with self._lock:
            self._mark_used(name, -1)

    def unload_idle(self) -> list[str]:
        """Unload models unused for longer than the idle time; returns their names."""
        now = self._clock()
        with self._lock:
            idle = [
                name
                for name in self._loaded
                if self._in_use.get(name, 0) == 0 and now - self._last_used.get(name, now) > self._idle_seconds
            ]
            for name in idle:
                del self._loaded[name]
        for name in idle:
            log.info("unloaded idle model %s", name)
        return idle

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            self._loaded.clear()

    def _mark_used(self, name: str, delta: int) -> None:
        self._in_use[name] = self._in_use.get(name, 0) + delta
        self._last_used[name] = self._clock()

    def _evict_over_cap(self) -> None:
        while len(self._loaded) > self._max_loaded:
            idle = [n for n in self._loaded if self._in_use.get(n, 0) == 0]
            if not idle:
                return
            oldest = min(idle, key=lambda n: self._last_used.get(n, 0.0))
            del self._loaded[oldest]
            log.info("unloaded model %s to stay within %d loaded models", oldest, self._max_loaded)


class LocalBackend:
    """Transcribes with Whisper models in this process; the event loop only awaits the pool."""

    kind = BackendKind.LOCAL
    wants_whisper_input = True

    def __init__(
        self,
        *,
        engine: LocalEngine,
        specs: dict[str, ModelSpec],
        default_model: str,
        workers: int,
        max_loaded: int = 2,
        idle_seconds: float = 900.0,
    ) -> None:
        self._engine = engine
        self.default_model = default_model
        self.pool = ModelPool(engine, specs, max_loaded=max_loaded, idle_seconds=idle_seconds)
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local")
        self._ready = False
        self._reaper: asyncio.Task[None] | None = None
        self._idle_seconds = idle_seconds

    async def start(self) -> None:
        """Load the default model once so the first request does not pay for it."""
        if self._ready:
            return
        await self._run(self._warm)
        self._ready = True
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle_models())

    def _warm(self) -> None:
        self.pool.acquire(self.default_model)
        self.pool.release(self.default_model)

    async def _reap_idle_models(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._idle_seconds / 4))
            await self._run(self.pool.unload_idle)

    def check(self, options: TranscriptionOptions) -> None:
        """Reject unknown models and languages or tasks the chosen model cannot do."""
        spec = self._spec(options.model)
        language = primary_language(options.language)
        if language is not None and language not in WHISPER_LANGUAGES:
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
        self, audio: AudioFile, options: TranscriptionOptions, deadline: float | None = None
    ) -> Transcript:
        """Decode and transcribe in the pool; the model is loaded there if needed."""
        if not self._ready:
            raise BackendNotReady("the local backend is still loading its model")
        spec = self._spec(options.model)
        request = EngineRequest(
            language=primary_language(options.language) or ("en" if not spec.multilingual else None),
            task=options.task,
            prompt=options.prompt,
            temperature=options.temperature,
            word_timestamps=options.word_timestamps,
            cancelled=threading.Event(),
        )
        try:
            result = await self._run(self._transcribe_sync, spec.name, audio, request, deadline)
        except asyncio.CancelledError:
            assert request.cancelled is not None
            request.cancelled.set()
            raise
        return Transcript(
            text=" ".join(s.text.strip() for s in result.segments if s.text.strip()),
            language=result.language,
            language_probability=result.language_probability,
            duration=audio.info.duration,
            backend=BackendKind.LOCAL,
            model=spec.name,
            segments=result.segments,
        )

    def _transcribe_sync(
        self, name: str, audio: AudioFile, request: EngineRequest, deadline: float | None
    ) -> EngineResult:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineTooShort("the deadline passed while the call waited for a worker")
        assert audio.whisper_input is not None, "validation writes the input of backends that want it"
        samples = read_whisper_input(Path(audio.whisper_input))
        model = self.pool.acquire(name)
        try:
            return self._engine.transcribe(model, samples, request)
        finally:
            self.pool.release(name)

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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.pool.clear()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

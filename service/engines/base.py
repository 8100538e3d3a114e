"""The engine contract: what a local engine is given (model spec, request, clips) and what it returns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from service.domain import Segment, SpokenBefore, Task

Samples = npt.NDArray[np.float32]
"""16 kHz mono audio as float32 in [-1, 1], what every Whisper engine takes."""
ModelT = TypeVar("ModelT")


@dataclass(frozen=True)
class ModelSpec:
    """A model the local backend can serve: its name, where it comes from and what it understands."""

    name: str
    source: str
    """A model name the engine's own loader resolves, or a file or folder path."""
    multilingual: bool
    ct2_dir: Callable[[], Path] | None = None
    """Returns the CTranslate2 folder of a bundled model, preparing it on first use (joining parts can take
    seconds, so it never runs at start-up before the server listens)."""


@dataclass(frozen=True)
class EngineRequest:
    """What an engine needs for one transcription."""

    language: str | None
    task: Task
    prompt: str
    temperature: float | None
    word_timestamps: bool
    cancelled: threading.Event | None = None
    """Set when the caller has gone; engines that can stop between segments, or after encoding, do."""
    quick: bool = False
    """An interim result: greedy decoding and the least context, trading accuracy for speed."""


@dataclass(frozen=True)
class EngineResult:
    """What an engine returns: segments and the language it heard."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float

    @property
    def text(self) -> str:
        """The segments' text, joined by single spaces."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


@dataclass(frozen=True)
class Clip:
    """A stretch of at most 30 s to transcribe on its own, in seconds from the start of the samples given."""

    start: float
    end: float


class LocalEngine(Protocol[ModelT]):
    """A Whisper implementation: loads a model and transcribes 16 kHz mono float32 audio, in worker threads."""

    name: str

    def load(self, spec: ModelSpec) -> ModelT:
        """Load a model into memory."""
        ...

    def transcribe(self, model: ModelT, audio: Samples, request: EngineRequest) -> EngineResult:
        """Transcribe a short recording whole, each window conditioned on the text before it."""
        ...

    def detect_language(self, model: ModelT, audio: Samples) -> tuple[str, float]:
        """The most likely spoken language of up to 30 s of speech, and its probability."""
        ...

    def transcribe_clips(
        self, model: ModelT, audio: Samples, clips: Sequence[Clip], request: EngineRequest
    ) -> tuple[Segment, ...]:
        """Transcribe clips of `audio` independently (batched where the engine can); `request.language` is set.

        Segment and word times are seconds from the start of `audio`.
        """
        ...

    def transcribe_utterance(
        self, model: ModelT, audio: Samples, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """Transcribe one utterance of at most 30 s as fast as the engine can (live results), detecting the language
        on the utterance and `before` when the request has none; `before` is the speech just before it, which an
        engine may hear as context when its text is in that language, and whose text it never returns."""
        ...

"""The faster-whisper engine: CTranslate2 int8 on the CPU, batched for long audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.audio.decode import WHISPER_SAMPLE_RATE
from service.backends.local import EngineRequest, EngineResult, ModelSpec
from service.domain import Segment, Word

_FALLBACK_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


class _Loaded:
    """A model and its batched pipeline; CTranslate2 runs num_workers calls on it in parallel."""

    def __init__(self, model: Any, pipeline: Any) -> None:
        self.model = model
        self.pipeline = pipeline


class FasterWhisperEngine:
    """Runs CTranslate2 Whisper models; bundled models load straight from their package folders."""

    name = "faster-whisper"

    def __init__(
        self,
        *,
        cache_dir: Path,
        compute_type: str = "int8",
        cpu_threads: int = 1,
        num_workers: int = 2,
        beam_size: int = 5,
        batch_size: int = 8,
        batched_min_seconds: float = 60.0,
        vad_filter: bool = True,
    ) -> None:
        self._cache_dir = cache_dir
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._num_workers = num_workers
        self._beam_size = beam_size
        self._batch_size = batch_size
        self._batched_min_seconds = batched_min_seconds
        self._vad_filter = vad_filter

    def load(self, spec: ModelSpec) -> object:
        """Load with WhisperModel: a bundled folder, a local path, or a name its own loader resolves."""
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        source = str(spec.ct2_dir) if spec.ct2_dir is not None else spec.source
        model = WhisperModel(
            source,
            device="cpu",
            compute_type=self._compute_type,
            cpu_threads=self._cpu_threads,
            num_workers=self._num_workers,
            download_root=str(self._cache_dir / "faster-whisper"),
        )
        return _Loaded(model, BatchedInferencePipeline(model))

    def transcribe(self, model: object, audio: npt.NDArray[np.float32], request: EngineRequest) -> EngineResult:
        """Sequential beam search for short audio; VAD-cut chunks decoded as a batch for long audio."""
        assert isinstance(model, _Loaded)
        options: dict[str, Any] = {
            "language": request.language,
            "task": request.task.value,
            "beam_size": self._beam_size,
            "best_of": self._beam_size,
            "temperature": (request.temperature if request.temperature is not None else _FALLBACK_TEMPERATURES),
            "initial_prompt": request.prompt or None,
            "word_timestamps": request.word_timestamps,
            "vad_filter": self._vad_filter,
        }
        seconds = len(audio) / WHISPER_SAMPLE_RATE
        if self._batch_size > 1 and seconds >= self._batched_min_seconds:
            segments, info = model.pipeline.transcribe(audio, batch_size=self._batch_size, **options)
        else:
            segments, info = model.model.transcribe(audio, **options)
        collected = []
        for segment in segments:
            if request.cancelled is not None and request.cancelled.is_set():
                break
            collected.append(_segment(segment))
        return EngineResult(
            segments=tuple(collected),
            language=str(info.language),
            language_probability=float(info.language_probability),
        )


def _segment(raw: Any) -> Segment:
    return Segment(
        start=float(raw.start),
        end=float(raw.end),
        text=str(raw.text),
        words=tuple(
            Word(start=float(w.start), end=float(w.end), text=str(w.word), probability=float(w.probability))
            for w in (raw.words or ())
        ),
        avg_logprob=float(raw.avg_logprob),
        no_speech_prob=float(raw.no_speech_prob),
    )

"""The faster-whisper engine: CTranslate2 int8 on the CPU; clips of long recordings are decoded as a batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.domain import Segment, Word
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples

_FALLBACK_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


@dataclass(frozen=True)
class FasterWhisperModel:
    """A loaded WhisperModel; CTranslate2 runs num_workers calls on it in parallel."""

    model: Any


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
        vad_filter: bool = True,
    ) -> None:
        self._cache_dir = cache_dir
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._num_workers = num_workers
        self._beam_size = beam_size
        self._vad_filter = vad_filter

    def load(self, spec: ModelSpec) -> FasterWhisperModel:
        """Load with WhisperModel: a bundled folder, a local path, or a name its own loader resolves."""
        from faster_whisper import WhisperModel

        source = str(spec.ct2_dir()) if spec.ct2_dir is not None else spec.source
        model = WhisperModel(
            source,
            device="cpu",
            compute_type=self._compute_type,
            cpu_threads=self._cpu_threads,
            num_workers=self._num_workers,
            download_root=str(self._cache_dir / "faster-whisper"),
        )
        return FasterWhisperModel(model)

    def transcribe(self, model: FasterWhisperModel, audio: Samples, request: EngineRequest) -> EngineResult:
        """Sequential beam search with temperature fallback, each window conditioned on the text before it."""
        segments, info = model.model.transcribe(
            audio,
            **self._decoding(request),
            temperature=request.temperature if request.temperature is not None else _FALLBACK_TEMPERATURES,
            vad_filter=self._vad_filter,
        )
        return EngineResult(
            segments=_collect(segments, request),
            language=str(info.language),
            language_probability=float(info.language_probability),
        )

    def detect_language(self, model: FasterWhisperModel, audio: Samples) -> tuple[str, float]:
        """Whisper's language detection on the first 30 s of the samples."""
        if not model.model.model.is_multilingual:
            return "en", 1.0
        language, probability, _ = model.model.detect_language(audio=audio)
        return str(language), float(probability)

    def transcribe_clips(
        self, model: FasterWhisperModel, audio: Samples, clips: Sequence[Clip], request: EngineRequest
    ) -> tuple[Segment, ...]:
        """All clips as one batch through faster-whisper's batched pipeline (a new one per call: it keeps state)."""
        from faster_whisper import BatchedInferencePipeline

        segments, _ = BatchedInferencePipeline(model.model).transcribe(
            audio,
            **self._decoding(request),
            temperature=request.temperature if request.temperature is not None else 0.0,
            clip_timestamps=[{"start": clip.start, "end": clip.end} for clip in clips],
            batch_size=len(clips),
            vad_filter=False,
        )
        return _collect(segments, request)

    def _decoding(self, request: EngineRequest) -> dict[str, Any]:
        return {
            "language": request.language,
            "task": request.task.value,
            "beam_size": self._beam_size,
            "best_of": self._beam_size,
            "initial_prompt": request.prompt or None,
            "word_timestamps": request.word_timestamps,
        }


def _collect(segments: Iterable[Any], request: EngineRequest) -> tuple[Segment, ...]:
    collected = []
    for segment in segments:
        if request.cancelled is not None and request.cancelled.is_set():
            break
        collected.append(_segment(segment))
    return tuple(collected)


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

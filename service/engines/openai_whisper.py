"""The openai-whisper engine (the reference implementation), fp32 on the CPU."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from service.domain import Segment, SpokenBefore, Word
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples
from service.engines.ct2_checkpoint import (
    alignment_heads_dump,
    ct2_alignment_heads,
    openai_whisper_checkpoint,
)

_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_WINDOW_SAMPLES = 30 * 16000


class OpenAIWhisperReplicas:
    """Independent copies of one model: openai-whisper's decoder keeps per-call state on the module."""

    def __init__(self, models: list[Any]) -> None:
        self.dims = models[0].dims
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for model in models:
            self._free.put(model)

    @contextmanager
    def checkout(self) -> Iterator[Any]:
        model = self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)


class OpenAIWhisperEngine:
    """Runs openai-whisper models; bundled CTranslate2 models are converted to checkpoints once."""

    name = "openai-whisper"

    def __init__(self, cache_dir: Path, replicas: int = 1, cpu_threads: int = 0, beam_size: int = 5) -> None:
        self._cache_dir = cache_dir
        self._replicas = replicas
        self._beam_size = beam_size
        self._cpu_threads = cpu_threads
        self._torch_lock = threading.Lock()

    def load(self, spec: ModelSpec) -> OpenAIWhisperReplicas:
        """Load `replicas` copies of the model with whisper.load_model (names, files and bundled models)."""
        import torch
        import whisper

        with self._torch_lock:
            if self._cpu_threads:
                torch.set_num_threads(self._cpu_threads)
        source = spec.source
        heads: list[tuple[int, int]] = []
        if spec.ct2_dir is not None:
            ct2_dir = spec.ct2_dir()
            source = str(openai_whisper_checkpoint(ct2_dir, self._cache_dir, spec.name))
            heads = ct2_alignment_heads(ct2_dir)
        models = []
        for _ in range(self._replicas):
            model = whisper.load_model(source, device="cpu", download_root=str(self._cache_dir / "openai-whisper"))
            if heads:
                dims = model.dims
                model.set_alignment_heads(alignment_heads_dump(heads, dims.n_text_layer, dims.n_text_head))
            models.append(model)
        return OpenAIWhisperReplicas(models)

    def transcribe(self, model: OpenAIWhisperReplicas, audio: Samples, request: EngineRequest) -> EngineResult:
        """Transcribe with beam search at temperature 0, falling back to sampling as Whisper does."""
        with model.checkout() as whisper_model:
            language, probability = request.language, 0.0
            if language is None:
                language, probability = _detect_language(whisper_model, audio)
            result = self._run(whisper_model, audio, replace(request, language=language), condition=True)
        return EngineResult(
            segments=tuple(_segment(s) for s in result["segments"]),
            language=str(result["language"]),
            language_probability=probability,
        )

    def detect_language(self, model: OpenAIWhisperReplicas, audio: Samples) -> tuple[str, float]:
        """Whisper's language detection on the first 30 s of the samples."""
        with model.checkout() as whisper_model:
            return _detect_language(whisper_model, audio)

    def transcribe_clips(
        self, model: OpenAIWhisperReplicas, audio: Samples, clips: Sequence[Clip], request: EngineRequest
    ) -> tuple[Segment, ...]:
        """Each clip on its own (openai-whisper has no batching), its times shifted to the clip's start."""
        segments: list[Segment] = []
        with model.checkout() as whisper_model:
            for clip in clips:
                if request.cancelled is not None and request.cancelled.is_set():
                    break
                first, last = round(clip.start * 16000), round(clip.end * 16000)
                result = self._run(whisper_model, audio[first:last], request, condition=False)
                segments.extend(_segment(s).shifted(clip.start) for s in result["segments"])
        return tuple(segments)

    def transcribe_utterance(
        self, model: OpenAIWhisperReplicas, audio: Samples, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """As a single clip, the text before it as the prompt: the reference engine has no faster path. A language
        not given is detected on the last 30 s of the speech before and the utterance."""
        language, probability = request.language, 1.0
        if language is None:
            heard = audio if before is None else np.concatenate([before.samples, audio])
            language, probability = self.detect_language(model, heard[-_WINDOW_SAMPLES:])
        if before is not None and before.in_language(language):
            request = replace(request, prompt=before.after(request.prompt))
        segments = self.transcribe_clips(
            model, audio, [Clip(0.0, len(audio) / 16000)], replace(request, language=language)
        )
        return EngineResult(segments=segments, language=language, language_probability=probability)

    def _run(self, whisper_model: Any, audio: Samples, request: EngineRequest, *, condition: bool) -> Any:
        temperature = (request.temperature,) if request.temperature is not None else _FALLBACK_TEMPERATURES
        return whisper_model.transcribe(
            audio,
            language=request.language,
            task=request.task.value,
            temperature=temperature,
            initial_prompt=request.prompt or None,
            word_timestamps=request.word_timestamps,
            condition_on_previous_text=condition,
            beam_size=1 if request.quick else self._beam_size,
            best_of=1 if request.quick else self._beam_size,
            fp16=False,
            verbose=None,
        )


def _detect_language(model: Any, audio: Samples) -> tuple[str, float]:
    import whisper

    if not model.is_multilingual:
        return "en", 1.0
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), model.dims.n_mels)
    _, probs = model.detect_language(mel)
    language = max(probs, key=probs.get)
    return str(language), float(probs[language])


def _segment(raw: dict[str, Any]) -> Segment:
    return Segment(
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=str(raw["text"]),
        words=tuple(
            Word(
                start=float(w["start"]),
                end=float(w["end"]),
                text=str(w["word"]),
                probability=float(w["probability"]),
            )
            for w in raw.get("words", ())
        ),
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
    )

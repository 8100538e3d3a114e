"""The faster-whisper engine: CTranslate2 int8 on the CPU; clips of long recordings are decoded as a batch."""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from service.audio.decode import WHISPER_SAMPLE_RATE
from service.domain import Segment, SpokenBefore, Word
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples

_FALLBACK_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
# An utterance is encoded with at least this much silence after it (with less, Whisper tends to repeat itself to
# fill the window), and no more: the encoder's time grows faster than the window (20 s take 0.17 s on one core,
# 30 s 0.42 s). Only a final decoded without the speech before it gets the whole 30 s window Whisper was trained
# on, which a lone short utterance needs to be heard as well as offline.
_MIN_TRAILING_SILENCE = 2.0
_LONE_FINAL_CONTEXT = 30.0
_TOKENS_PER_SECOND = 12
_LOOP_COMPRESSION_RATIO = 2.4
# faster-whisper's defaults for word timings: punctuation joined to the word after or before it.
_PREPENDED = "\"'\u201c\u00bf([{-"
_APPENDED = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
_CLOSING_PUNCTUATION = ".,!?;:\u2026\u3002\u3001\uff0c\uff01\uff1f"  # with the ideographic and full-width forms


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

    def transcribe_utterance(
        self, model: FasterWhisperModel, audio: Samples, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """Decode the speech before the utterance and the utterance together, with the text already given for the
        speech before forced as the decoder's first words, so the model hears the left context (as an offline
        transcription does) and writes only what follows. An interim result encodes only as much context as it
        needs instead of Whisper's padded 30 s. A language not given is detected on that same encoded audio (no
        second encoder pass); the speech before is context only when its text is in the language. An answer that
        looks like a repetition loop takes the ordinary path, the utterance alone, as does an utterance for which
        nothing follows the forced words. Word timings, when asked, come from aligning the written words to the same
        encoded audio, so asking for them does not change the text. A request cancelled by the time its audio is
        encoded ends there, with no text."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        seconds = len(audio) / WHISPER_SAMPLE_RATE
        whisper = model.model
        alone = replace(request, prompt=before.after(request.prompt)) if before is not None else request
        if before is not None and len(before.samples) / WHISPER_SAMPLE_RATE + seconds + _MIN_TRAILING_SILENCE > 30.0:
            request, before = alone, None
        heard = audio if before is None else np.concatenate([before.samples, audio])
        least = 0.0 if request.quick or before is not None else _LONE_FINAL_CONTEXT
        context = min(30.0, math.ceil(max(len(heard) / WHISPER_SAMPLE_RATE + _MIN_TRAILING_SILENCE, least)))
        padded = np.pad(heard, (0, max(0, round(context * WHISPER_SAMPLE_RATE) - len(heard))))
        features = whisper.feature_extractor(padded)[..., : round(context * 100)]
        encoded = whisper.encode(features)
        language, probability = request.language or "en", 1.0
        if request.cancelled is not None and request.cancelled.is_set():
            return _result((), language)
        if request.language is None and whisper.model.is_multilingual:
            token, probability = whisper.model.detect_language(encoded)[0][0]
            language = token.removeprefix("<|").removesuffix("|>")
        if before is not None and not before.in_language(language):
            heard_alone = self.transcribe_utterance(model, audio, replace(request, language=language))
            return replace(heard_alone, language_probability=probability)
        request, alone = replace(request, language=language), replace(alone, language=language)
        tokenizer = Tokenizer(
            whisper.hf_tokenizer,
            whisper.model.is_multilingual,
            task=request.task.value,
            language=language,
        )
        previous = tokenizer.encode(" " + request.prompt.strip()) if request.prompt.strip() else []
        plain = whisper.get_prompt(tokenizer, previous, without_timestamps=True)
        prompt = whisper.get_prompt(
            tokenizer, previous, without_timestamps=True, prefix=before.text if before is not None else None
        )
        beams = self._beams(request)
        forced = len(prompt) - len(plain)
        result = whisper.model.generate(
            encoded,
            [prompt],
            beam_size=beams,
            num_hypotheses=beams,
            return_scores=True,
            max_length=_max_length(len(plain), forced, seconds, whisper.max_length),
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, (-1,)),
        )[0]
        written = written_after(forced, result.scores, result.sequences_ids)
        text = tokenizer.decode(written)
        if text.strip() and (get_compression_ratio(text) > _LOOP_COMPRESSION_RATIO or _repeats(text)):
            return _result(self.transcribe_clips(model, audio, [Clip(0.0, seconds)], alone), language, probability)
        if before is not None:
            # When the forced words lack their closing punctuation, the decoder writes it first.
            text = text.lstrip(_CLOSING_PUNCTUATION + string.whitespace)
            # The forced words can seem to cover the utterance after them (a word cut off by a short pause), or the
            # decoder closes their sentence and stops: the utterance is then decoded alone.
            if not any(character.isalnum() for character in text):
                return replace(self.transcribe_utterance(model, audio, alone), language_probability=probability)
        words: tuple[Word, ...] = ()
        if request.word_timestamps:
            heard_before = 0.0 if before is None else len(before.samples) / WHISPER_SAMPLE_RATE
            aligned = whisper.find_alignment(
                tokenizer,
                [[*prompt[len(plain) :], *written]],
                encoded,
                round(len(heard) / whisper.feature_extractor.hop_length),
            )[0]
            words = _words_after(forced, aligned, heard_before, seconds)
        segment = Segment(start=0.0, end=seconds, text=text, words=words, no_speech_prob=float(result.no_speech_prob))
        return _result((segment,), language, probability)

    def _beams(self, request: EngineRequest) -> int:
        return 1 if request.quick else self._beam_size

    def _decoding(self, request: EngineRequest) -> dict[str, Any]:
        return {
            "language": request.language,
            "task": request.task.value,
            "beam_size": self._beams(request),
            "best_of": self._beams(request),
            "initial_prompt": request.prompt or None,
            "word_timestamps": request.word_timestamps,
        }


def written_after(forced: int, scores: Sequence[float], sequences: Sequence[Sequence[int]]) -> Sequence[int]:
    """The tokens written after the forced ones by the likeliest hypothesis per written token, as Whisper ranks.

    The sequences start with the forced tokens. CTranslate2 scores each by its log-probability, which leaves the
    forced tokens out, divided by a length that counts them: ranked so, a short hypothesis that skips the words it is
    unsure of wins."""
    _, sequence = max(
        zip(scores, sequences, strict=True),
        key=lambda hypothesis: hypothesis[0] * len(hypothesis[1]) / max(1, len(hypothesis[1]) - forced),
    )
    return sequence[forced:]


def _words_after(forced: int, aligned: list[dict[str, Any]], offset: float, seconds: float) -> tuple[Word, ...]:
    """The words of an alignment (faster-whisper's find_alignment) that start after the `forced` tokens, their
    punctuation joined to them as faster-whisper does, with times moved back by `offset` and kept inside the
    utterance's `seconds`."""
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(aligned, _PREPENDED, _APPENDED)
    words = []
    position = 0
    for timing in aligned:
        if position >= forced and timing["word"]:
            start = min(seconds, max(0.0, float(timing["start"]) - offset))
            end = min(seconds, max(start, float(timing["end"]) - offset))
            words.append(
                Word(
                    start=round(start, 2),
                    end=round(end, 2),
                    text=str(timing["word"]),
                    probability=float(timing["probability"]),
                )
            )
        position += len(timing["tokens"])
    return tuple(words)


def _max_length(prompt: int, forced: int, seconds: float, ceiling: int) -> int:
    """The max_length of a decode after a prompt of `prompt` tokens that lets the decoder write the forced tokens and
    then _TOKENS_PER_SECOND tokens per second of speech, and a few more. CTranslate2 ends a decode after
    min(max_length / 2, max_length - prompt + 1) tokens, forced ones included: the sum of the three, given as is, cut
    finals decoded after 15 s of context in mid-sentence ("Turn left at the bakery")."""
    return min(ceiling, prompt - 1 + 2 * (forced + int(_TOKENS_PER_SECOND * seconds) + 8))


def _result(segments: tuple[Segment, ...], language: str, probability: float = 1.0) -> EngineResult:
    return EngineResult(segments=segments, language=language, language_probability=probability)


def _repeats(text: str) -> bool:
    """Whether the text ends with a run of four or more words said twice in a row (a repetition loop)."""
    words = text.lower().split()
    return any(words[-n:] == words[-2 * n : -n] for n in range(4, len(words) // 2 + 1))


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

"""Where the speech is: Silero VAD (the model faster-whisper ships) over audio in windows, speech spans, and spans
grouped into clips of at most 30 s (local engines) or pieces near a target length (the API backend)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.audio.decode import WHISPER_SAMPLE_RATE, read_whisper_input

FRAME_SAMPLES = 512
"""Silero VAD scores 32 ms frames of 16 kHz audio."""
FRAME_SECONDS = FRAME_SAMPLES / WHISPER_SAMPLE_RATE
VAD_WINDOW_SECONDS = FRAME_SECONDS * 2_000
"""Audio scored as one task (64 s, read from disk at once): windows of a recording are scored on several workers
at once, each from a fresh model state, which settles within a few frames."""


@dataclass(frozen=True)
class Span:
    """A stretch of audio, in seconds from the start of the recording."""

    start: float
    end: float
    silence_after: float = 0.0
    """How long the pause after this stretch of speech lasts (before padding); a good place to cut."""

    @property
    def duration(self) -> float:
        """Its length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class SpeechOptions:
    """How probabilities become speech spans; the defaults are faster-whisper's for batched transcription."""

    threshold: float = 0.5
    """A frame at or above this probability is speech."""
    min_silence_seconds: float = 0.16
    """Speech ends after this much silence (frames below threshold - 0.15)."""
    max_speech_seconds: float = 30.0
    """Longer speech is split at its last pause of 0.1 s or more, else cut, so every padded span fits a clip."""
    pad_seconds: float = 0.4
    """Each span is widened by this much on both sides (half the gap when neighbours are closer)."""


class SpeechScorer:
    """Silero VAD over audio that arrives in pieces: the model's state and the previous frame's tail carry over.

    Frames are scored in batches of `batch_frames`, so memory stays small whatever the length (the ONNX model's
    buffers grow with the batch: 10,000 frames at once take about 200 MB).
    """

    _CONTEXT = 64

    def __init__(self, batch_frames: int = 512) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._batch = batch_frames
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def score(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities of the whole frames now available; a partial frame waits for the next call."""
        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = audio[whole:]
        frames = audio[:whole].reshape(-1, FRAME_SAMPLES)
        scores = [np.zeros(0, dtype=np.float32)]
        for first in range(0, len(frames), self._batch):
            batch = frames[first : first + self._batch]
            contexts = np.concatenate([self._context[None, :], batch[:-1, -self._CONTEXT :]])
            self._context = batch[-1, -self._CONTEXT :].copy()
            output, h, c = self._session.run(
                None,
                {"input": np.concatenate([contexts, batch], axis=1), "h": self._state[0], "c": self._state[1]},
            )
            self._state = np.stack([h, c])
            scores.append(np.asarray(output, dtype=np.float32).reshape(-1))
        return np.concatenate(scores)

    def flush(self) -> npt.NDArray[np.float32]:
        """The probability of the last partial frame, zero-padded (at the end of the audio)."""
        if len(self._pending) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.score(np.zeros(FRAME_SAMPLES - len(self._pending), dtype=np.float32))


def speech_probabilities(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Silero VAD's speech probability of every 32 ms frame of the samples (the last frame zero-padded)."""
    scorer = SpeechScorer()
    return np.concatenate([scorer.score(samples), scorer.flush()])


def windows(total_seconds: float, window_seconds: float = VAD_WINDOW_SECONDS) -> list[Span]:
    """[0, total] cut into consecutive windows of `window_seconds` (the last one shorter), to score one at a time."""
    edges = [*np.arange(0.0, total_seconds, window_seconds).tolist(), total_seconds]
    return [Span(start, end) for start, end in itertools.pairwise(edges)]


def score_window(whisper_input: Path, window: Span) -> npt.NDArray[np.float32]:
    """Speech probabilities of one window of a file written by WhisperInputWriter, read from disk alone."""
    return speech_probabilities(read_whisper_input(whisper_input, window.start, window.end))


def speech_spans(
    probabilities: npt.NDArray[np.float32], total_seconds: float, options: SpeechOptions | None = None
) -> list[Span]:
    """The stretches of speech the frame probabilities show, padded, in order and not overlapping."""
    opts = options or SpeechOptions()
    off_threshold = max(opts.threshold - 0.15, 0.01)
    min_silence = max(1, round(opts.min_silence_seconds / FRAME_SECONDS))
    min_pause = max(1, round(0.098 / FRAME_SECONDS))
    max_frames = int((opts.max_speech_seconds - 2 * opts.pad_seconds) / FRAME_SECONDS) - 1
    raw: list[tuple[int, int]] = []
    start: int | None = None
    silence_from: int | None = None
    last_pause: tuple[int, int] | None = None
    for index, probability in enumerate(probabilities.tolist()):
        if start is None:
            if probability >= opts.threshold:
                start, silence_from, last_pause = index, None, None
            continue
        if probability >= opts.threshold:
            if silence_from is not None and index - silence_from >= min_pause:
                last_pause = (silence_from, index)
            silence_from = None
        elif probability < off_threshold and silence_from is None:
            silence_from = index
        if silence_from is not None and index - silence_from >= min_silence:
            raw.append((start, silence_from))
            start = None
            continue
        if index - start > max_frames:
            if last_pause is not None and last_pause[0] > start:
                raw.append((start, last_pause[0]))
                start = last_pause[1]
            else:
                raw.append((start, index))
                start = index
            silence_from, last_pause = None, None
    if start is not None:
        raw.append((start, len(probabilities)))
    return _padded([(a * FRAME_SECONDS, min(b * FRAME_SECONDS, total_seconds)) for a, b in raw], total_seconds, opts)


def _padded(spans: Sequence[tuple[float, float]], total: float, opts: SpeechOptions) -> list[Span]:
    if not spans:
        return []
    starts = [start for start, _ in spans]
    ends = [end for _, end in spans]
    for i in range(len(spans)):
        if i == 0:
            starts[i] = max(0.0, starts[i] - opts.pad_seconds)
        if i + 1 < len(spans):
            gap = starts[i + 1] - ends[i]
            widen = gap / 2 if gap < 2 * opts.pad_seconds else opts.pad_seconds
            ends[i] += widen
            starts[i + 1] -= widen
        else:
            ends[i] = min(total, ends[i] + opts.pad_seconds)
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)] + [total - spans[-1][1]]
    return [Span(start, end, gap) for start, end, gap in zip(starts, ends, gaps, strict=True) if end > start]


def group_spans(spans: Sequence[Span], max_seconds: float, search: float = 0.3) -> list[Span]:
    """Consecutive spans joined, silence between them included, into groups of at most max_seconds.

    A group is closed at the longest pause within its last `search` fraction rather than at the last pause that
    fits, so cuts fall in clear silence. A span longer than max_seconds stays a group of its own.
    """
    groups: list[Span] = []
    first = 0
    while first < len(spans):
        last = first
        while last + 1 < len(spans) and spans[last + 1].end - spans[first].start <= max_seconds:
            last += 1
        if last + 1 < len(spans):
            earliest = spans[first].start + (1 - search) * max_seconds
            candidates = [k for k in range(first, last + 1) if spans[k].end >= earliest] or [last]
            last = max(candidates, key=lambda k: (spans[k].silence_after, k))
        groups.append(Span(spans[first].start, spans[last].end, spans[last].silence_after))
        first = last + 1
    return groups


def cover(groups: Sequence[Span], total_seconds: float) -> list[Span]:
    """The groups widened to tile [0, total]: each boundary in the middle of the silence between two groups."""
    if not groups:
        return [Span(0.0, total_seconds)] if total_seconds > 0 else []
    cuts = [(groups[i].end + groups[i + 1].start) / 2 for i in range(len(groups) - 1)]
    edges = [0.0, *cuts, total_seconds]
    return [Span(edges[i], edges[i + 1]) for i in range(len(groups))]

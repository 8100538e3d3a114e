"""Plain domain values: what a transcription asks for and what it returns."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt


class BackendKind(enum.Enum):
    """An engine family that performs transcriptions."""

    OPENAI = "openai"
    LOCAL = "local"


class Task(enum.Enum):
    """Transcribe in the spoken language, or translate to English."""

    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


def primary_language(tag: str | None) -> str | None:
    """The lower-case primary subtag of a BCP-47 tag ("es-MX" -> "es")."""
    return tag.split("-")[0].lower() if tag else None


@dataclass(frozen=True)
class RawPcmFormat:
    """Layout of headerless signed 16-bit little-endian PCM."""

    sample_rate_hz: int
    channels: int


@dataclass(frozen=True)
class TranscriptionOptions:
    """What a caller asks of one transcription."""

    backend: BackendKind | None = None
    model: str = ""
    language: str | None = None
    prompt: str = ""
    temperature: float | None = None
    task: Task = Task.TRANSCRIBE
    word_timestamps: bool = False
    raw_pcm: RawPcmFormat | None = None


@dataclass(frozen=True)
class Word:
    """One word with its timing in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its timing in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0

    def shifted(self, seconds: float) -> Segment:
        """The same segment with its and its words' times moved by `seconds`."""
        return replace(
            self,
            start=self.start + seconds,
            end=self.end + seconds,
            words=tuple(replace(w, start=w.start + seconds, end=w.end + seconds) for w in self.words),
        )


@dataclass(frozen=True)
class Transcript:
    """The text of an audio file, with segments, language and who produced it."""

    text: str
    language: str
    duration: float
    backend: BackendKind
    model: str
    segments: tuple[Segment, ...] = ()
    language_probability: float = 0.0


@dataclass(frozen=True)
class ModelDescription:
    """A model a backend can serve."""

    name: str
    backend: BackendKind
    engine: str
    loaded: bool
    multilingual: bool
    is_default: bool
    load_seconds: float | None = None


@dataclass(frozen=True)
class AudioInfo:
    """What probing an uploaded file found."""

    container: str
    extension: str
    codec: str
    duration: float
    sample_rate: int
    channels: int
    size_bytes: int


@dataclass(frozen=True)
class AudioFile:
    """A validated upload on disk, named with the extension of its detected container."""

    path: str
    info: AudioInfo
    whisper_input: str
    """The audio as Whisper's input (16 kHz mono 16-bit PCM), written while validating."""


Progress = Callable[[float, float], None]
"""Called with (audio seconds done, audio seconds in all) while a recording is transcribed."""


class LiveFormat(enum.Enum):
    """How the bytes of a live stream are framed."""

    LINEAR16 = "linear16"
    WEBM_OPUS = "webm"
    OGG_OPUS = "ogg"


@dataclass(frozen=True)
class LiveOptions:
    """What a caller asks of a live transcription."""

    transcription: TranscriptionOptions
    audio_format: LiveFormat
    pcm: RawPcmFormat | None = None
    """The layout of LINEAR16 audio."""
    interim_results: bool = False
    voice_activity_events: bool = False
    speech_start_timeout: float | None = None
    """Seconds without any speech from the start after which the stream is ended; None never ends it."""
    speech_end_timeout: float | None = None
    """Seconds of pause that end an utterance; None uses the server's default."""


@dataclass(frozen=True)
class SpokenBefore:
    """What a live stream heard just before an utterance: that audio (16 kHz mono) and the final text already sent
    for it, so the utterance can be decoded with its left context without saying that text again."""

    samples: npt.NDArray[np.float32]
    text: str
    language: str = ""
    """The language that text is in, when known."""

    def after(self, prompt: str) -> str:
        """A prompt that ends with this text, for a recognizer that decodes the utterance alone."""
        return f"{prompt} {self.text}".strip()

    def in_language(self, language: str) -> bool:
        """Whether this text may be heard as the context of speech in `language`."""
        return self.language in ("", language)


@dataclass(frozen=True)
class Recognition:
    """What a recognizer heard in one utterance of a live stream: its segments and their language."""

    segments: tuple[Segment, ...]
    language: str = ""
    language_probability: float = 1.0
    """How sure the detection of the language was; 1 when the language was given."""


@dataclass(frozen=True)
class LiveResult:
    """The text of one utterance (final) or of what has been heard of it so far (interim)."""

    text: str
    is_final: bool
    start: float
    end: float
    stability: float = 0.0
    words: tuple[Word, ...] = ()
    language: str = ""


class VoiceActivity(enum.Enum):
    """Speech began or ended."""

    SPEECH_BEGIN = "speech_begin"
    SPEECH_END = "speech_end"


@dataclass(frozen=True)
class VoiceEvent:
    """Where speech began or ended, in seconds from the start of the stream."""

    kind: VoiceActivity
    offset: float


LiveEvent = LiveResult | VoiceEvent

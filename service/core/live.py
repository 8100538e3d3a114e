"""Live transcription: audio that is still arriving, cut into utterances by voice activity, with interim and final
results; sessions are bounded in number and in length."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from service.audio.decode import WHISPER_SAMPLE_RATE
from service.audio.live import ContainerDecoder, PcmDecoder
from service.audio.speech import FRAME_SAMPLES, FRAME_SECONDS, SpeechScorer
from service.audio.store import UploadStore
from service.core.admission import AdmissionGate
from service.core.transcriber import validate_options
from service.domain import (
    BackendKind,
    LiveEvent,
    LiveFormat,
    LiveOptions,
    LiveResult,
    Recognition,
    Segment,
    SpokenBefore,
    TranscriptionOptions,
    VoiceActivity,
    VoiceEvent,
)
from service.errors import (
    BackendNotConfigured,
    BackendNotReady,
    FieldViolation,
    InvalidConfig,
    LiveNotSupported,
    LiveSessionTooLong,
    SpeechStartTimeout,
    TranscribeError,
)
from service.threads import drop_outcome

log = logging.getLogger(__name__)
Samples = npt.NDArray[np.float32]

_THRESHOLD = 0.5
_OFF_THRESHOLD = 0.35
_PREROLL_SECONDS = 0.5
_TAIL_SECONDS = 0.4
_PROMPT_CHARS = 200
# A final is decoded with up to this much of the speech before it (previous utterances, their finals forced as the
# decoder's first words), within Whisper's 30 s window less the silence an utterance needs after it.
_LEFT_SECONDS = 15.0
_WINDOW_SECONDS = 28.0
# After this much of a pause a local engine starts decoding the final already, in case the pause ends the utterance;
# if speech resumes first, that work is dropped. Every final hears this much of its pause, however fast the audio came.
_SPECULATE_AFTER_SECONDS = 0.15
# Past this length an utterance also ends at a shorter pause, so long speech is cut between sentences.
_LONG_UTTERANCE_SECONDS = 8.0
_SHORT_PAUSE_SECONDS = 0.25
# Without a language in the config, a stream keeps the language of the first final detected on this much speech;
# a shorter utterance whose language is detected with less than this probability waits for the next one.
_LANGUAGE_SETTLES_SECONDS = 10.0
_SURE_OF_LANGUAGE = 0.5


@runtime_checkable
class LiveRecognizer(Protocol):
    """What a backend offers live sessions: recognition of one utterance held in memory."""

    kind: BackendKind
    supports_interim: bool
    default_model: str

    def check(self, options: TranscriptionOptions) -> None:
        """Reject options this backend cannot honour."""
        ...

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
        """The segments of up to 30 s of speech (times from the start of `samples`) and their language, detected on
        `samples` and `before` when the options have none; `scratch` is a free file path the backend may write and
        must delete. Interim recognition trades accuracy for speed. `before` is the speech just before, whose text
        follows `prompt`: the backend hears it as context or takes its text as prompt."""
        ...


@dataclass(frozen=True)
class LiveLimits:
    """Server-wide bounds and defaults of live sessions."""

    max_sessions: int = 4
    max_session_seconds: float = 4 * 3600.0
    speech_end_seconds: float = 0.5
    interim_interval_seconds: float = 1.5
    max_utterance_seconds: float = 20.0


@dataclass(frozen=True)
class _Utterance:
    """An utterance the endpointer closed: its audio and where it lies in the stream."""

    start: float
    end: float
    samples: Samples
    speech_ended: bool
    pause_start: float | None
    """Where the pause that closed it began, if a pause did."""

    def joined(self, start: float, samples: Samples) -> tuple[float, Samples] | None:
        """Where this utterance starts, and its audio, the silence after it and that of a later utterance starting
        at `start`, if they fit in one window."""
        if start + len(samples) / WHISPER_SAMPLE_RATE - self.start > _WINDOW_SECONDS:
            return None
        gap = np.zeros(max(0, round((start - self.end) * WHISPER_SAMPLE_RATE)), dtype=np.float32)
        return self.start, np.concatenate([self.samples, gap, samples])


@dataclass(frozen=True)
class Pause:
    """The utterance in progress has gone quiet: where it and its pause began, how long the pause has lasted and
    how long a pause ends it."""

    start: float
    pause_start: float
    seconds: float
    ends_after: float


class Endpointer:
    """Cuts a stream into utterances by voice activity: speech begins at a frame above the threshold and ends after
    `speech_end` seconds below the lower threshold; an utterance reaching `max_utterance` seconds is cut at its
    quietest recent frame. Only the current utterance (or a short pre-roll) is kept in memory."""

    def __init__(self, speech_end: float, max_utterance: float) -> None:
        self._scorer = SpeechScorer()
        self._end_frames = max(1, math.ceil(speech_end / FRAME_SECONDS))
        self._short_end_frames = min(self._end_frames, math.ceil(_SHORT_PAUSE_SECONDS / FRAME_SECONDS))
        self._long_frames = int(_LONG_UTTERANCE_SECONDS / FRAME_SECONDS)
        self._max_frames = int(max_utterance / FRAME_SECONDS)
        self._preroll = round(_PREROLL_SECONDS / FRAME_SECONDS)
        self._tail = round(_TAIL_SECONDS / FRAME_SECONDS)
        self._audio = np.zeros(0, dtype=np.float32)
        self._received = 0
        self._first_frame = 0
        self._frames = 0
        self._probabilities: list[float] = []
        self._start: int | None = None
        self._last_end = 0
        self._silent = 0
        self.heard_speech = False

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return self._received

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self.samples / WHISPER_SAMPLE_RATE

    def feed(self, samples: Samples) -> list[VoiceEvent | _Utterance]:
        """Score the new audio; return speech beginnings, ends and closed utterances, in order."""
        self._audio = np.concatenate([self._audio, samples])
        self._received += len(samples)
        events: list[VoiceEvent | _Utterance] = []
        for probability in self._scorer.score(samples).tolist():
            self._probabilities.append(probability)
            self._frames += 1
            events.extend(self._step(probability))
        self._forget_before(self._start if self._start is not None else self._frames - self._preroll)
        return events

    def flush(self) -> list[VoiceEvent | _Utterance]:
        """The end of the stream: the utterance in progress is closed."""
        if self._start is None:
            return []
        return self._close(self._frames + len(self._audio) // FRAME_SAMPLES, speech_ended=True)

    def current(self) -> tuple[float, Samples] | None:
        """The utterance in progress: where it starts and its audio so far."""
        if self._start is None:
            return None
        return self._start * FRAME_SECONDS, self._slice(self._start, None)

    def pause(self) -> Pause | None:
        """The pause the utterance in progress is in, if it is in one."""
        if self._start is None or not self._silent:
            return None
        needed = self._pause_frames(self._frames - 1)
        return Pause(
            start=self._start * FRAME_SECONDS,
            pause_start=(self._frames - self._silent) * FRAME_SECONDS,
            seconds=self._silent * FRAME_SECONDS,
            ends_after=needed * FRAME_SECONDS,
        )

    def _step(self, probability: float) -> list[VoiceEvent | _Utterance]:
        frame = self._frames - 1
        if self._start is None:
            if probability < _THRESHOLD:
                return []
            self._start = max(0, frame - self._preroll, self._first_frame, self._last_end)
            self._silent = 0
            self.heard_speech = True
            return [VoiceEvent(VoiceActivity.SPEECH_BEGIN, frame * FRAME_SECONDS)]
        if probability >= _THRESHOLD:
            self._silent = 0
        elif self._silent or probability < _OFF_THRESHOLD:
            self._silent += 1
        needed = self._pause_frames(frame)
        if self._silent >= needed:
            return self._close(frame - self._silent + 1 + min(self._tail, self._silent), speech_ended=True)
        if frame - self._start >= self._max_frames:
            recent = self._probabilities[-(frame - self._start) // 3 :]
            cut = frame - len(recent) + int(np.argmin(recent)) + 1
            return self._close(cut, speech_ended=False)
        return []

    def _pause_frames(self, frame: int) -> int:
        assert self._start is not None
        return self._end_frames if frame - self._start < self._long_frames else self._short_end_frames

    def _close(self, end: int, *, speech_ended: bool) -> list[VoiceEvent | _Utterance]:
        assert self._start is not None
        end = min(end, self._first_frame + len(self._audio) // FRAME_SAMPLES)
        utterance = _Utterance(
            start=self._start * FRAME_SECONDS,
            end=end * FRAME_SECONDS,
            samples=self._slice(self._start, end).copy(),
            speech_ended=speech_ended,
            pause_start=(self._frames - self._silent) * FRAME_SECONDS if speech_ended and self._silent else None,
        )
        events: list[VoiceEvent | _Utterance] = [utterance]
        self._last_end = end
        if speech_ended:
            events.insert(0, VoiceEvent(VoiceActivity.SPEECH_END, utterance.end))
            self._start = None
        else:
            self._start = end
        self._silent = 0
        return events

    def _slice(self, start: int, end: int | None) -> Samples:
        first = (start - self._first_frame) * FRAME_SAMPLES
        last = None if end is None else (end - self._first_frame) * FRAME_SAMPLES
        return self._audio[max(0, first) : last]

    def _forget_before(self, frame: int) -> None:
        frame = max(self._first_frame, frame)
        drop = (frame - self._first_frame) * FRAME_SAMPLES
        if drop > 0:
            self._audio = self._audio[drop:]
            self._first_frame = frame
        del self._probabilities[: max(0, len(self._probabilities) - self._max_frames)]


class LiveTranscriber:
    """Opens live sessions on the configured backends, at most `max_sessions` at once."""

    def __init__(
        self,
        *,
        store: UploadStore,
        backends: Mapping[BackendKind, LiveRecognizer],
        default_backend: BackendKind,
        limits: LiveLimits,
        retry_after_seconds: float,
    ) -> None:
        self._store = store
        self._backends = dict(backends)
        self._default = default_backend
        self.limits = limits
        self.gate = AdmissionGate("live stage", limits.max_sessions, retry_after_seconds)
        self._sessions: set[LiveSession] = set()
        self._draining = False

    def check(self, options: LiveOptions) -> LiveRecognizer:
        """The backend a live stream goes to, after checking the options against it."""
        try:
            backend = self._transcription_backend(options.transcription)
        except TranscribeError as error:
            raise error.within("live_config") from None
        if options.speech_start_timeout is not None and options.speech_start_timeout < 0:
            raise InvalidConfig(
                "the speech start timeout cannot be negative",
                violations=[FieldViolation("live_config.speech_start_timeout", "must be zero or more")],
            )
        if options.speech_end_timeout is not None and not 0.2 <= options.speech_end_timeout <= 5.0:
            raise InvalidConfig(
                "the speech end timeout must be between 0.2 and 5 seconds",
                violations=[FieldViolation("live_config.speech_end_timeout", "must be between 0.2 s and 5 s")],
            )
        if options.interim_results and not backend.supports_interim:
            raise LiveNotSupported(
                f"the {backend.kind.value} backend gives final results only; interim results need a local engine",
                violations=[FieldViolation("live_config.interim_results", "needs a local backend")],
            )
        return backend

    def _transcription_backend(self, options: TranscriptionOptions) -> LiveRecognizer:
        validate_options(options)
        kind = options.backend or self._default
        backend = self._backends.get(kind)
        if backend is None:
            raise BackendNotConfigured(
                f"the {kind.value} backend is not configured on this server", metadata={"backend": kind.value}
            )
        backend.check(options)
        return backend

    @contextlib.asynccontextmanager
    async def session(self, options: LiveOptions) -> AsyncIterator[LiveSession]:
        """A running session for the options; refused at once (Overloaded) when every place is taken."""
        backend = self.check(options)
        if self._draining:
            raise BackendNotReady("the server is shutting down")
        with self.gate.admit():
            session = LiveSession(options, backend, self.limits, self._store.new_scratch_path)
            self._sessions.add(session)
            try:
                yield session
            finally:
                self._sessions.discard(session)
                await session.aclose()

    async def drain(self) -> None:
        """Shutting down: refuse new sessions and end every open one as if its client had half-closed, so each
        sends the final of the utterance in progress and ends OK (within the server's grace period)."""
        self._draining = True
        await asyncio.gather(*(session.finish() for session in list(self._sessions)))


class LiveSession:
    """One live stream: audio in (feed, then finish), events out (events)."""

    def __init__(
        self,
        options: LiveOptions,
        backend: LiveRecognizer,
        limits: LiveLimits,
        scratch: ScratchPaths,
    ) -> None:
        self.options = options
        self.backend = backend
        self._limits = limits
        self._scratch = scratch
        self._endpointer = Endpointer(
            options.speech_end_timeout or limits.speech_end_seconds, limits.max_utterance_seconds
        )
        self._events: asyncio.Queue[LiveEvent | TranscribeError | None] = asyncio.Queue()
        self._finals: asyncio.Queue[tuple[_Utterance, _Speculation | None] | None] = asyncio.Queue()
        self._finalizing = False
        self._speculation: _Speculation | None = None
        self._speculates = backend.supports_interim
        self._incoming: asyncio.Queue[Samples | None] = asyncio.Queue()
        self._history = options.transcription.prompt
        self._spoken: deque[tuple[Samples, str]] = deque()
        self._spoken_language = ""
        self._language = options.transcription.language
        self._held: _Decoded | None = None
        self._interim_at = 0.0
        self._interim: asyncio.Task[None] | None = None
        self._last_interim: list[str] = []
        self._utterance_start: float | None = None
        self._decoder = self._decoder_for(options)
        self._finishing = False
        self._error: TranscribeError | None = None
        self._tasks = [
            asyncio.get_running_loop().create_task(self._process()),
            asyncio.get_running_loop().create_task(self._finalize()),
        ]

    def _decoder_for(self, options: LiveOptions) -> PcmDecoder | ContainerDecoder:
        loop = asyncio.get_running_loop()
        if options.audio_format is LiveFormat.LINEAR16:
            assert options.pcm is not None
            return PcmDecoder(options.pcm, self._incoming.put_nowait)

        def deliver(samples: Samples) -> None:
            loop.call_soon_threadsafe(self._incoming.put_nowait, samples)

        def fail(error: Exception) -> None:
            loop.call_soon_threadsafe(self.end_with, error)

        return ContainerDecoder(options.audio_format, deliver, fail)

    def feed(self, audio: bytes) -> None:
        """Take the next bytes of audio (none once the session is finishing)."""
        if not self._finishing:
            self._decoder.push(audio)

    async def finish(self) -> None:
        """No more audio (the client half-closed, or the server is draining): decode the rest; the events end after
        the last final."""
        if self._finishing:
            return
        self._finishing = True
        try:
            await asyncio.to_thread(self._decoder.close)
        finally:
            self._incoming.put_nowait(None)

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Results and voice events as they come; raises the session's error, if any."""
        while (event := await self._events.get()) is not None:
            if isinstance(event, TranscribeError):
                raise event
            yield event

    async def aclose(self) -> None:
        """Stop every task of the session."""
        self._decoder.abort()
        extra = [t for t in (self._interim, self._speculation.task if self._speculation else None) if t is not None]
        for task in [*self._tasks, *extra]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def model(self) -> str:
        """The model that recognizes this stream."""
        return self.options.transcription.model or self.backend.default_model

    def fail(self, error: Exception) -> None:
        """End the session with an error at once (its events raise it next): the client has gone, or recognition
        failed."""
        self._events.put_nowait(_failure(error))

    def end_with(self, error: Exception) -> None:
        """The input went wrong (audio that does not decode, a client gone quiet, a message out of order): no more
        audio is taken, what was heard before is still recognized and its finals sent, then the events raise the
        error."""
        self._error = self._error or _failure(error)
        if not self._finishing:
            self._tasks.append(asyncio.get_running_loop().create_task(self._end_input()))

    async def _end_input(self) -> None:
        with contextlib.suppress(TranscribeError):  # the session ends with the input's first error
            await self.finish()

    async def _process(self) -> None:
        try:
            while (samples := await self._incoming.get()) is not None:
                if len(samples) == 0:
                    continue
                room = round(self._limits.max_session_seconds * WHISPER_SAMPLE_RATE) - self._endpointer.samples
                happened = await asyncio.to_thread(self._endpointer.feed, samples[: max(0, room)])
                self._dispatch(happened)
                self._check_limits(cut=room < len(samples))
                self._speculate()
                self._maybe_interim()
        except TranscribeError as error:
            self._error = self._error or error
            self._finishing = True
            self._decoder.abort()
        self._dispatch(self._endpointer.flush())
        self._finals.put_nowait(None)

    def _check_limits(self, *, cut: bool) -> None:
        """Raise when the stream went past the session's length (the audio past it was `cut`) or its speech start
        timeout."""
        seconds = self._endpointer.seconds
        if cut:
            raise LiveSessionTooLong(
                f"a live session may last at most {self._limits.max_session_seconds:g} seconds of audio",
                metadata={"limit_seconds": f"{self._limits.max_session_seconds:g}"},
            )
        timeout = self.options.speech_start_timeout
        if timeout and not self._endpointer.heard_speech and seconds > timeout:
            raise SpeechStartTimeout(
                f"no speech in the first {timeout:g} seconds of the stream",
                metadata={"speech_start_timeout_seconds": f"{timeout:g}"},
            )

    def _dispatch(self, happened: list[VoiceEvent | _Utterance]) -> None:
        for event in happened:
            if isinstance(event, VoiceEvent):
                if event.kind is VoiceActivity.SPEECH_BEGIN:
                    self._interim_at = event.offset
                if self.options.voice_activity_events:
                    self._events.put_nowait(event)
            else:
                if self._interim is not None:
                    self._interim.cancel()
                    self._interim = None
                self._last_interim = []
                self._interim_at = event.end
                self._finals.put_nowait((event, self._take_speculation(event)))

    def _take_speculation(self, utterance: _Utterance) -> _Speculation | None:
        """The final decoded ahead for this utterance, if it was decoded from the same speech."""
        speculation, self._speculation = self._speculation, None
        if speculation is None:
            return None
        if (speculation.start, speculation.pause_start) == (utterance.start, utterance.pause_start):
            return speculation
        speculation.task.cancel()
        return None

    def _speculate(self) -> None:
        """Start decoding the final during a pause that may end the utterance; drop that work when speech resumes."""
        pause = self._endpointer.pause()
        speculation = self._speculation
        if speculation is not None:
            if pause is not None and (pause.start, pause.pause_start) == (speculation.start, speculation.pause_start):
                return
            speculation.task.cancel()
            self._speculation = None
        current = self._endpointer.current()
        if (
            not self._speculates
            or pause is None
            or current is None
            or not _SPECULATE_AFTER_SECONDS <= pause.seconds < pause.ends_after
            or self._finalizing
            or not self._finals.empty()
        ):
            return
        start, samples = current
        if self._held is not None:
            if (joined := self._held.utterance.joined(start, samples)) is None:
                return
            start, samples = joined
        samples = _heard_for_final(start, samples, pause.pause_start)
        before = self._before(samples)
        task = asyncio.get_running_loop().create_task(
            self._recognize(samples, interim=False, prompt=self._history, before=before)
        )
        task.add_done_callback(drop_outcome)
        self._speculation = _Speculation(pause.start, pause.pause_start, before, task, self._held)

    def _maybe_interim(self) -> None:
        if (
            not self.options.interim_results
            or (self._interim is not None and not self._interim.done())
            or self._speculation is not None
        ):
            return
        current = self._endpointer.current()
        if current is None:
            return
        start, samples = current
        heard_until = start + len(samples) / WHISPER_SAMPLE_RATE
        if heard_until - self._interim_at < self._limits.interim_interval_seconds or not self._finals.empty():
            return
        self._interim_at = heard_until
        if self._held is not None and (joined := self._held.utterance.joined(start, samples)) is not None:
            start, samples = joined
        self._interim = asyncio.get_running_loop().create_task(self._recognize_interim(start, samples))

    async def _recognize_interim(self, start: float, samples: Samples) -> None:
        try:
            recognition = await self._recognize(samples, interim=True, prompt=self._interim_prompt(), before=None)
        except TranscribeError as error:
            self.fail(error)
            return
        text = _text(recognition.segments)
        if not text or not self._finals.empty():
            return
        words = text.split()
        stable = 0
        for before, now in zip(self._last_interim, words, strict=False):
            if before != now:
                break
            stable += 1
        self._last_interim = words
        end = start + len(samples) / WHISPER_SAMPLE_RATE
        stability = round(min(0.9, stable / len(words)), 2) if words else 0.0
        self._events.put_nowait(
            LiveResult(
                text=text, is_final=False, start=start, end=end, stability=stability, language=recognition.language
            )
        )

    async def _finalize(self) -> None:
        try:
            while (closed := await self._finals.get()) is not None:
                utterance, speculation = closed
                held, self._held = self._held, None
                if held is not None:
                    if (joined := held.followed_by(utterance)) is None:
                        self._final(held)
                        held = None
                    else:
                        utterance = joined
                self._finalizing = True
                if speculation is not None and speculation.held is held:
                    before, recognition = speculation.before, await speculation.task
                else:
                    if speculation is not None:
                        speculation.task.cancel()
                    heard = _heard_for_final(utterance.start, utterance.samples, utterance.pause_start)
                    before = self._before(heard)
                    recognition = await self._recognize(heard, interim=False, prompt=self._history, before=before)
                self._finalizing = False
                decoded = _Decoded(utterance, before, recognition)
                if self._unsure_of_language(decoded):
                    self._held = decoded
                else:
                    self._final(decoded)
            if self._held is not None:
                self._final(self._held)
            self._events.put_nowait(self._error)
        except TranscribeError as error:
            self.fail(error)

    def _unsure_of_language(self, decoded: _Decoded) -> bool:
        """Whether the stream's language is still open and Whisper could not tell it from this short utterance (on a
        word or two its detection is little better than chance): the utterance is then decoded again with the next
        one, as one final."""
        utterance = decoded.utterance
        return (
            not self._language
            and decoded.recognition.language_probability < _SURE_OF_LANGUAGE
            and utterance.end - utterance.start < _LANGUAGE_SETTLES_SECONDS
        )

    def _final(self, decoded: _Decoded) -> None:
        utterance, before, recognition = decoded.utterance, decoded.before, decoded.recognition
        text = _text(recognition.segments)
        if not text:
            self._forget_spoken()
            return
        self._heard(recognition.language, utterance.samples, before)
        self._spoken.append((utterance.samples, text))
        words = tuple(word for segment in recognition.segments for word in segment.shifted(utterance.start).words)
        self._events.put_nowait(
            LiveResult(
                text=text,
                is_final=True,
                start=utterance.start,
                end=utterance.end,
                words=words,
                language=recognition.language,
            )
        )

    def _heard(self, language: str, samples: Samples, before: SpokenBefore | None) -> None:
        """A final's language: the speech before is context only in its own language, and the stream keeps the
        language of the first final detected on enough speech."""
        if language != self._spoken_language:
            self._forget_spoken()
            self._spoken_language = language
        heard = len(samples) + (len(before.samples) if before is not None else 0)
        if not self._language and heard >= _LANGUAGE_SETTLES_SECONDS * WHISPER_SAMPLE_RATE:
            self._language = language or None

    def _before(self, samples: Samples) -> SpokenBefore | None:
        """The recent speech a final is decoded after: whole utterances, newest last, as much as the window holds."""
        limit = min(_LEFT_SECONDS, _WINDOW_SECONDS - len(samples) / WHISPER_SAMPLE_RATE) * WHISPER_SAMPLE_RATE
        while self._spoken and sum(len(audio) for audio, _ in self._spoken) > limit:
            self._remember(self._spoken.popleft()[1])
        if not self._spoken:
            return None
        return SpokenBefore(
            np.concatenate([audio for audio, _ in self._spoken]),
            " ".join(t for _, t in self._spoken),
            self._spoken_language,
        )

    def _forget_spoken(self) -> None:
        while self._spoken:
            self._remember(self._spoken.popleft()[1])

    def _remember(self, text: str) -> None:
        self._history = f"{self._history} {text}".strip()[-_PROMPT_CHARS:]

    def _interim_prompt(self) -> str:
        return " ".join([self._history, *(text for _, text in self._spoken)]).strip()[-_PROMPT_CHARS:]

    async def _recognize(
        self, samples: Samples, *, interim: bool, prompt: str, before: SpokenBefore | None
    ) -> Recognition:
        """Interim results are recognized in the language of the latest final until the stream's is settled."""
        language = self._language or (self._spoken_language if interim else None) or None
        options = replace(self.options.transcription, prompt=prompt, language=language)
        return await self.backend.recognize(
            samples, options, interim=interim, prompt=prompt, scratch=self._scratch(), before=before
        )


@dataclass(frozen=True)
class _Speculation:
    """A final being decoded during a pause: which utterance and pause it is for, and the context it was given."""

    start: float
    pause_start: float
    before: SpokenBefore | None
    task: asyncio.Task[Recognition]
    held: _Decoded | None
    """The utterance held before this one, whose audio the decode starts with."""


@dataclass(frozen=True)
class _Decoded:
    """A decoded utterance, the speech it was decoded after and what was heard: a final, or held for the next
    utterance while its language is unsure."""

    utterance: _Utterance
    before: SpokenBefore | None
    recognition: Recognition

    def followed_by(self, later: _Utterance) -> _Utterance | None:
        """This utterance and the later one as one, if both fit in one window."""
        joined = self.utterance.joined(later.start, later.samples)
        return None if joined is None else replace(later, start=joined[0], samples=joined[1])


class ScratchPaths(Protocol):
    """Gives a new, unused file path in the upload folder."""

    def __call__(self) -> Path: ...


def _heard_for_final(start: float, samples: Samples, pause_start: float | None) -> Samples:
    """The audio a final decodes, `samples` starting at `start`: up to _SPECULATE_AFTER_SECONDS into the pause that
    ended the utterance, whether its final was decoded during that pause or once the pause ended it, so the same
    audio gives the same final at any pace and in chunks of any size."""
    if pause_start is None:
        return samples
    return samples[: max(0, round((pause_start + _SPECULATE_AFTER_SECONDS - start) * WHISPER_SAMPLE_RATE))]


def _text(segments: tuple[Segment, ...]) -> str:
    return " ".join(s.text.strip() for s in segments if s.text.strip() and s.no_speech_prob < 0.9)


def _failure(error: Exception) -> TranscribeError:
    return error if isinstance(error, TranscribeError) else TranscribeError("the live stream failed")

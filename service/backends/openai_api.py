"""The OpenAI-compatible API backend: the official SDK on a bounded thread pool, any base_url, long files in pieces."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import openai

from service.audio.decode import WHISPER_SAMPLE_RATE, encode_flac, read_whisper_input, transcode_to_flac
from service.audio.speech import Span, cover, group_spans, score_window, speech_spans, windows
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
    Word,
    primary_language,
)
from service.engines.base import Samples
from service.engines.languages import code_for_language
from service.errors import (
    DeadlineTooShort,
    ModelNotFound,
    TranscribeError,
    UpstreamAuthFailed,
    UpstreamRateLimited,
    UpstreamRejectedAudio,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from service.threads import ignoring_stop, in_thread

log = logging.getLogger(__name__)
T = TypeVar("T")

# File extensions the API accepts; it infers the format from the file name.
API_EXTENSIONS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "oga", "wav", "webm"})
TRANSLATION_MODEL = "whisper-1"
MAX_REQUEST_BYTES = 25 * 1024 * 1024 - 1024 * 1024
"""The API's 25 MiB request limit less room for the multipart envelope and FLAC framing."""
FLAC_BYTES_PER_SECOND = 2 * WHISPER_SAMPLE_RATE
"""What 16 kHz mono 16-bit FLAC takes per second of incompressible noise (its framing adds under 1 %)."""
PROMPT_CONTEXT_WORDS = 30
"""Words of the previous piece's text passed on as the next piece's prompt."""


class OpenAIBackend:
    """Sends validated files to an OpenAI-compatible /audio endpoint and maps the answer.

    The HTTP call runs on the event loop with the SDK's async client, so cancelling a call (client gone, deadline
    passed) closes its upstream connection at once; re-encoding runs on the backend's own bounded thread pool.

    A recording that does not fit one request even as 16 kHz mono FLAC is split where nobody speaks: voice activity
    is scored window by window over its Whisper input, speech is grouped into pieces of at most `piece_seconds`, and
    the pieces are sent as FLAC, `piece_concurrency` at a time, each prompted with the end of the text before it.
    A recording in which nobody speaks gets an empty transcript without a request.
    """

    kind = BackendKind.OPENAI
    supports_interim = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        default_model: str,
        timeout_seconds: float,
        max_retries: int,
        workers: int,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        piece_seconds: float = 600.0,
        piece_concurrency: int = 4,
    ) -> None:
        self.default_model = default_model
        self.workers = workers
        self._max_request_bytes = max_request_bytes
        self._piece_seconds = min(piece_seconds, max_request_bytes / FLAC_BYTES_PER_SECOND)
        self._piece_concurrency = max(1, piece_concurrency)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=max_retries
        )
        self._timeout = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai")
        self._calls = asyncio.Semaphore(workers)

    async def start(self) -> None:
        """Nothing to load: the API is checked on first use."""

    def check(self, options: TranscriptionOptions) -> None:
        """Every option is passed through; the API judges models and languages itself."""

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """Upload the file (re-encoded to FLAC if the API does not take it as it is) or, if too large, its pieces."""
        model = options.model or (TRANSLATION_MODEL if options.task is Task.TRANSLATE else self.default_model)
        as_is = audio.info.extension in API_EXTENSIONS and audio.info.size_bytes <= self._max_request_bytes
        if not as_is and audio.info.duration * FLAC_BYTES_PER_SECOND > self._max_request_bytes:
            return await self._transcribe_pieces(audio, options, model, deadline, progress)
        path = Path(audio.path)
        async with self._calls:
            if as_is:
                raw = await self._post(path, options, model, deadline)
            else:
                async with self._derived_file(path.with_name(f"{path.stem}-api.flac"), transcode_to_flac, path) as flac:
                    raw = await self._post(flac, options, model, deadline)
        return _transcript(raw, model, audio.info.duration, options)

    async def _transcribe_pieces(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        model: str,
        deadline: float | None,
        progress: Progress | None,
    ) -> Transcript:
        """Send the pieces, piece_concurrency at a time, and merge their answers; the first failure cancels the rest."""
        source, total = Path(audio.whisper_input), audio.info.duration
        pieces = await self._pieces(source, total, deadline)
        log.info("sending a %.0f s recording to the API in %d pieces", total, len(pieces))
        upload = Path(audio.path)
        limit = asyncio.Semaphore(self._piece_concurrency)
        results: list[Transcript | None] = [None] * len(pieces)
        done = 0.0
        finished = 0

        async def send(index: int, piece: _Piece) -> None:
            nonlocal done, finished
            async with limit, self._calls:
                flac = upload.with_name(f"{upload.stem}-piece{index}.flac")
                async with self._derived_file(flac, _write_flac, source, piece.sent.start, piece.sent.end):
                    prompted = replace(options, prompt=_prompt(options.prompt, results[:index]))
                    raw = await self._post(flac, prompted, model, deadline)
            results[index] = _transcript(raw, model, piece.sent.duration, options)
            done += piece.covered.duration
            finished += 1
            if progress is not None:
                progress(total if finished == len(pieces) else min(done, total), total)

        failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for index, piece in enumerate(pieces):
                    group.create_task(send(index, piece))
        except BaseExceptionGroup as failed:
            failure = failed.exceptions[0]
        if failure is not None:
            raise failure
        if progress is not None and not pieces:
            progress(total, total)
        answers = [answer for answer in results if answer is not None]
        return Transcript(
            text=" ".join(answer.text for answer in answers if answer.text),
            language=answers[0].language if answers else primary_language(options.language) or "",
            duration=total,
            backend=BackendKind.OPENAI,
            model=model,
            segments=tuple(
                segment.shifted(piece.sent.start)
                for piece, answer in zip(pieces, answers, strict=True)
                for segment in answer.segments
            ),
        )

    async def _pieces(self, source: Path, total: float, deadline: float | None) -> list[_Piece]:
        """Speech grouped into pieces that tile the recording, each sent at most piece_seconds long; none if silent."""
        # One window at a time: scoring several at once costs memory and gains little on the API backend's threads.
        scored = [await self._run(_score_speech, source, window, deadline) for window in windows(total)]
        groups = group_spans(speech_spans(np.concatenate(scored), total), self._piece_seconds)
        if not groups:
            return []
        return [
            _Piece(covered, _within(covered, group, self._piece_seconds))
            for covered, group in zip(cover(groups, total), groups, strict=True)
        ]

    @contextlib.asynccontextmanager
    async def _derived_file(self, dst: Path, write: Callable[..., None], *args: object) -> AsyncIterator[Path]:
        """`write(*args, dst)` run on the pool; the file is deleted on leaving, even when that happens mid-write."""
        try:
            await in_thread(ignoring_stop(write, *args, dst), self._executor)
            yield dst
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dst)

    def _client_within(self, deadline: float | None) -> openai.AsyncOpenAI:
        """The client with each attempt's timeout cut to the caller's remaining deadline."""
        if deadline is None:
            return self._client
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineTooShort("the deadline passed while the call waited for a worker")
        return self._client.with_options(timeout=min(self._timeout, remaining))

    async def _post(self, path: Path, options: TranscriptionOptions, model: str, deadline: float | None) -> Any:
        client = self._client_within(deadline)
        verbose = _supports_verbose_json(model)
        kwargs: dict[str, Any] = {"model": model}
        if options.prompt:
            kwargs["prompt"] = options.prompt
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if verbose:
            kwargs["response_format"] = "verbose_json"
            if options.task is Task.TRANSCRIBE:
                kwargs["timestamp_granularities"] = ["word", "segment"] if options.word_timestamps else ["segment"]
        else:
            kwargs["response_format"] = "json"
        try:
            with path.open("rb") as fh:
                upload = (path.name, fh)
                if options.task is Task.TRANSLATE:
                    # The SDK marks this endpoint deprecated but names no replacement; it is still the API's only
                    # way to translate speech to English (whisper-1 and compatible servers).
                    return await client.audio.translations.create(file=upload, **kwargs)
                language = primary_language(options.language)
                if language:
                    kwargs["language"] = language
                return await client.audio.transcriptions.create(file=upload, **kwargs)
        except openai.OpenAIError as exc:
            raise _domain_error(exc) from exc
        except ValueError as exc:
            raise UpstreamUnavailable("the upstream API returned a response that is not valid") from exc

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
        """One utterance of a live stream sent to the API as a small FLAC file (final results only), the text of the
        speech before it as the prompt."""
        if before is not None:
            prompt = before.after(prompt)
        model = options.model or (TRANSLATION_MODEL if options.task is Task.TRANSLATE else self.default_model)
        async with self._calls, self._derived_file(scratch.with_suffix(".flac"), encode_flac, samples) as flac:
            raw = await self._post(flac, replace(options, prompt=prompt), model, None)
        seconds = len(samples) / WHISPER_SAMPLE_RATE
        transcript = _transcript(raw, model, seconds, options)
        if transcript.segments or not transcript.text:
            return Recognition(transcript.segments, transcript.language)
        return Recognition((Segment(start=0.0, end=seconds, text=transcript.text),), transcript.language)

    def models(self) -> list[ModelDescription]:
        """The default model; the API serves others by name."""
        return [
            ModelDescription(
                name=self.default_model,
                backend=BackendKind.OPENAI,
                engine="openai-api",
                loaded=True,
                multilingual=True,
                is_default=True,
            )
        ]

    async def aclose(self) -> None:
        """Abandon queued re-encoding and close the HTTP client."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._client.close()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))


@dataclass(frozen=True)
class _Piece:
    """A stretch of the recording: the part of the tiling it stands for, and the part sent for it."""

    covered: Span
    sent: Span


def _within(covered: Span, group: Span, max_seconds: float) -> Span:
    """The covered span, narrowed to max_seconds around its speech if it is longer (the rest is silence)."""
    if covered.duration <= max_seconds:
        return covered
    slack = max(0.0, max_seconds - group.duration)
    after = min(covered.end - group.end, slack / 2)
    before = min(group.start - covered.start, slack - after)
    after = min(covered.end - group.end, slack - before)
    return Span(group.start - before, group.end + after)


def _score_speech(source: Path, window: Span, deadline: float | None) -> npt.NDArray[np.float32]:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineTooShort("the deadline passed before the recording was split for the API")
    return score_window(source, window)


def _write_flac(source: Path, start: float, end: float, dst: Path) -> None:
    encode_flac(read_whisper_input(source, start, end), dst)


def _prompt(prompt: str, earlier: Sequence[Transcript | None]) -> str:
    """The caller's prompt followed by the last words of the nearest earlier piece whose text is known and not empty."""
    previous = next((t.text for t in reversed(earlier) if t is not None and t.text), "")
    return " ".join(part for part in (prompt, *previous.split()[-PROMPT_CONTEXT_WORDS:]) if part)


def _supports_verbose_json(model: str) -> bool:
    # gpt-4o transcription models answer only json or text; Whisper models give segments and words.
    return not model.startswith("gpt-")


def _domain_error(exc: openai.OpenAIError) -> TranscribeError:
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("the upstream API did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable("the upstream API could not be reached")
    if isinstance(exc, openai.RateLimitError):
        retry = _retry_after(exc)
        return UpstreamRateLimited(
            "the upstream API is rate limiting this server; retry later",
            retry_after_seconds=retry,
            metadata={"upstream_status": "429"},
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamAuthFailed("the upstream API refused this server's credentials")
    if isinstance(exc, openai.NotFoundError):
        return ModelNotFound("the upstream API does not know the requested model")
    if isinstance(exc, openai.APIStatusError):
        status = str(exc.status_code)
        if 400 <= exc.status_code < 500:
            return UpstreamRejectedAudio(
                f"the upstream API rejected the request: {_api_message(exc)}",
                metadata={"upstream_status": status},
            )
        return UpstreamUnavailable("the upstream API failed after retries", metadata={"upstream_status": status})
    return UpstreamUnavailable("the upstream API returned a response that is not valid")


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if isinstance(message, str):
            return message[:300]
    return f"status {exc.status_code}"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _transcript(raw: Any, model: str, duration: float, options: TranscriptionOptions) -> Transcript:
    text = str(getattr(raw, "text", raw if isinstance(raw, str) else "")).strip()
    words = [
        Word(start=float(w.start), end=float(w.end), text=str(w.word)) for w in (getattr(raw, "words", None) or [])
    ]
    segments = tuple(
        Segment(
            start=float(s.start),
            end=float(s.end),
            text=str(s.text),
            words=tuple(w for w in words if s.start <= w.start < s.end or (w.start == s.end == s.start)),
            avg_logprob=float(getattr(s, "avg_logprob", 0.0) or 0.0),
            no_speech_prob=float(getattr(s, "no_speech_prob", 0.0) or 0.0),
        )
        for s in (getattr(raw, "segments", None) or [])
    )
    language = str(getattr(raw, "language", "") or "")
    code = code_for_language(language) or ""
    return Transcript(
        text=text,
        language=code or primary_language(options.language) or "",
        duration=duration,
        backend=BackendKind.OPENAI,
        model=model,
        segments=segments,
    )

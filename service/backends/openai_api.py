"""The OpenAI-compatible API backend: the official SDK on a bounded thread pool, any base_url."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import openai

from service.audio.decode import transcode_to_flac
from service.domain import (
    AudioFile,
    BackendKind,
    ModelDescription,
    Progress,
    Segment,
    Task,
    Transcript,
    TranscriptionOptions,
    Word,
    primary_language,
)
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

log = logging.getLogger(__name__)
T = TypeVar("T")

# File extensions the API accepts; it infers the format from the file name.
API_EXTENSIONS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "oga", "wav", "webm"})
TRANSLATION_MODEL = "whisper-1"


class OpenAIBackend:
    """Sends validated files to an OpenAI-compatible /audio endpoint and maps the answer.

    The HTTP call runs on the event loop with the SDK's async client, so cancelling a call (client gone, deadline
    passed) closes its upstream connection at once; re-encoding runs on the backend's own bounded thread pool.
    """

    kind = BackendKind.OPENAI

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        default_model: str,
        timeout_seconds: float,
        max_retries: int,
        workers: int,
    ) -> None:
        self.default_model = default_model
        self.workers = workers
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
        """Upload the file (re-encoded to FLAC if the API does not take its format) and map the answer."""
        model = options.model or (TRANSLATION_MODEL if options.task is Task.TRANSLATE else self.default_model)
        path = Path(audio.path)
        async with self._calls:
            if audio.info.extension in API_EXTENSIONS:
                raw = await self._post(path, options, model, deadline)
            else:
                flac = path.with_name(f"{path.stem}-api.flac")
                try:
                    await self._run(transcode_to_flac, path, flac)
                    raw = await self._post(flac, options, model, deadline)
                finally:
                    flac.unlink(missing_ok=True)
        return _transcript(raw, model, audio.info.duration, options)

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

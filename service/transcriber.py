"""The domain service: takes an upload to a validated file on disk, routes it, and cleans up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import ParamSpec, TypeVar

from service.admission import AdmissionGate
from service.audio.probe import probe, wrap_pcm_as_wav
from service.audio.store import Upload, UploadStore
from service.backends.base import TranscriptionBackend
from service.domain import AudioFile, BackendKind, ModelDescription, Transcript, TranscriptionOptions
from service.errors import (
    BackendNotConfigured,
    EmptyAudio,
    FieldViolation,
    InvalidConfig,
    StreamIdle,
    StreamOutOfOrder,
)
from service.memory import release_free_memory

log = logging.getLogger(__name__)

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_MAX_PROMPT_CHARS = 4000
_MAX_MODEL_CHARS = 256

_CONFIG_FIRST = FieldViolation("config", "must be set in the first message, and only there")

StreamItem = TranscriptionOptions | bytes
P = ParamSpec("P")
R = TypeVar("R")


class Transcriber:
    """Validates requests, spools audio to disk, probes it, and hands it to the chosen backend."""

    def __init__(
        self,
        *,
        store: UploadStore,
        backends: Mapping[BackendKind, TranscriptionBackend],
        default_backend: BackendKind,
        upload_limits: Mapping[BackendKind, int],
        max_audio_seconds: float,
        queue_sizes: Mapping[BackendKind, int] | None = None,
        max_concurrent_uploads: int = 64,
        stream_idle_seconds: float = 30.0,
        retry_after_seconds: float = 1.0,
        probe_workers: int = 2,
    ) -> None:
        self._store = store
        self._backends = dict(backends)
        self._default = default_backend
        self._limits = dict(upload_limits)
        self._max_seconds = max_audio_seconds
        self._idle_seconds = stream_idle_seconds
        queues = queue_sizes or {}
        self.gates = {
            kind: AdmissionGate(f"{kind.value} backend", backend.workers + queues.get(kind, 0), retry_after_seconds)
            for kind, backend in self._backends.items()
        }
        self.upload_gate = AdmissionGate("upload stage", max_concurrent_uploads, retry_after_seconds)
        self._probe_pool = ThreadPoolExecutor(max_workers=probe_workers, thread_name_prefix="probe")

    async def start(self) -> None:
        """Start every backend; the server reports SERVING only after this returns."""
        await asyncio.gather(*(backend.start() for backend in self._backends.values()))

    async def aclose(self) -> None:
        """Stop every backend and the probing threads."""
        await asyncio.gather(*(backend.aclose() for backend in self._backends.values()))
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    def models(self) -> list[ModelDescription]:
        """Every model of every configured backend."""
        return [model for backend in self._backends.values() for model in backend.models()]

    def backend_for(self, options: TranscriptionOptions) -> tuple[BackendKind, TranscriptionBackend]:
        """The backend a request goes to, after checking the options against it."""
        validate_options(options)
        kind = options.backend or self._default
        backend = self._backends.get(kind)
        if backend is None:
            raise BackendNotConfigured(
                f"the {kind.value} backend is not configured on this server",
                metadata={"backend": kind.value},
            )
        backend.check(options)
        return kind, backend

    async def transcribe_bytes(
        self, options: TranscriptionOptions, content: bytes, deadline: float | None = None
    ) -> Transcript:
        """Transcribe a whole file sent in one message."""
        kind, backend = self.backend_for(options)
        if not content:
            raise EmptyAudio("the request carries no audio bytes")
        with self._admitted(kind):
            upload = self._store.new_upload(self._limits[kind])
            try:
                await self._run_in_pool(upload.write_now, content)
                await upload.finish()
                return await self._transcribe_upload(backend, options, upload, deadline)
            finally:
                upload.discard()

    async def transcribe_stream(
        self,
        items: AsyncIterator[StreamItem],
        deadline: float | None = None,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> Transcript:
        """Transcribe a stream whose first item is the options and every later item audio bytes.

        A client that dies mid-upload can look, for a moment, like one that ended its stream, so `abandoned` is
        asked again after probing: a cut-off upload is never handed to a backend as if it were complete.
        """
        first = await self._next_item(items)
        if not isinstance(first, TranscriptionOptions):
            raise StreamOutOfOrder("the first message of the stream must carry config", violations=[_CONFIG_FIRST])
        kind, backend = self.backend_for(first)
        with self._admitted(kind):
            upload = self._store.new_upload(self._limits[kind])
            try:
                while (item := await self._next_item(items)) is not None:
                    if isinstance(item, TranscriptionOptions):
                        raise StreamOutOfOrder(
                            "config may be sent only once, in the first message", violations=[_CONFIG_FIRST]
                        )
                    await upload.write(item)
                await upload.finish()
                if upload.size == 0:
                    raise EmptyAudio("the stream carried no audio bytes")
                return await self._transcribe_upload(backend, first, upload, deadline, abandoned)
            finally:
                upload.discard()

    @contextmanager
    def _admitted(self, kind: BackendKind) -> Iterator[None]:
        """A place in the backend's queue and among the uploads; memory is given back when the last call ends."""
        try:
            with self.gates[kind].admit(), self.upload_gate.admit():
                yield
        finally:
            if self.upload_gate.in_flight == 0:
                with contextlib.suppress(RuntimeError):  # the pool is already shut down
                    asyncio.get_running_loop().run_in_executor(self._probe_pool, release_free_memory)

    async def _next_item(self, items: AsyncIterator[StreamItem]) -> StreamItem | None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that arrives in the same loop turn as
        # the item, and gRPC ends a dead client's stream and cancels the call in that very turn.
        try:
            async with asyncio.timeout(self._idle_seconds):
                return await anext(items, None)
        except TimeoutError:
            raise StreamIdle(
                f"the stream sent nothing for {self._idle_seconds:g} seconds",
                metadata={"idle_timeout_seconds": f"{self._idle_seconds:g}"},
            ) from None

    async def _transcribe_upload(
        self,
        backend: TranscriptionBackend,
        options: TranscriptionOptions,
        upload: Upload,
        deadline: float | None,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> Transcript:
        if options.raw_pcm is not None:
            wav = upload.sibling("wav")
            await self._run_in_pool(wrap_pcm_as_wav, upload.path, wav, options.raw_pcm)
            path = wav
        else:
            path = upload.path
        whisper_input = upload.sibling("s16") if backend.wants_whisper_input else None
        info = await self._run_in_pool(probe, path, self._max_seconds, whisper_input)
        if path == upload.path:
            path = upload.rename(info.extension)
        if abandoned():
            raise asyncio.CancelledError("the caller went away before its audio was complete")
        audio = AudioFile(path=str(path), info=info, whisper_input=str(whisper_input) if whisper_input else None)
        log.debug("probed upload: %s", info)
        transcript = await backend.transcribe(audio, options, deadline)
        return replace(transcript, duration=info.duration)

    async def _run_in_pool(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._probe_pool, functools.partial(fn, *args, **kwargs))


def validate_options(options: TranscriptionOptions) -> None:
    """Raise InvalidConfig listing every field with a value no backend can use."""
    violations: list[FieldViolation] = []
    if options.temperature is not None and not (
        math.isfinite(options.temperature) and 0.0 <= options.temperature <= 1.0
    ):
        violations.append(FieldViolation("config.temperature", "must be between 0 and 1"))
    if options.language is not None and not _LANGUAGE_TAG.match(options.language):
        violations.append(FieldViolation("config.language_code", "must be a BCP-47 tag such as en or es-MX"))
    if len(options.prompt) > _MAX_PROMPT_CHARS:
        violations.append(FieldViolation("config.prompt", f"must be at most {_MAX_PROMPT_CHARS} characters"))
    if len(options.model) > _MAX_MODEL_CHARS:
        violations.append(FieldViolation("config.model", f"must be at most {_MAX_MODEL_CHARS} characters"))
    if options.raw_pcm is not None:
        if not 8000 <= options.raw_pcm.sample_rate_hz <= 192000:
            violations.append(
                FieldViolation("config.explicit_decoding_config.sample_rate_hertz", "must be between 8000 and 192000")
            )
        if not 1 <= options.raw_pcm.channels <= 8:
            violations.append(
                FieldViolation("config.explicit_decoding_config.audio_channel_count", "must be between 1 and 8")
            )
    if violations:
        raise InvalidConfig("the transcription config is invalid", violations=violations)

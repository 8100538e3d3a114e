"""The one entry into the core for a finished recording: options plus a source of bytes in, a transcript out."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Generic, TypeVar

from service.audio.probe import probe, wrap_pcm_as_wav
from service.audio.store import Upload, UploadStore
from service.backends.base import SegmentSink, TranscriptionBackend, finished_segments
from service.core.admission import AdmissionGate
from service.domain import AudioFile, BackendKind, ModelDescription, Progress, Transcript, TranscriptionOptions
from service.errors import BackendNotConfigured, EmptyAudio, FieldViolation, InvalidConfig, StreamIdle
from service.memory import release_free_memory
from service.threads import in_thread

log = logging.getLogger(__name__)

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_MAX_PROMPT_CHARS = 4000
_MAX_MODEL_CHARS = 256

R = TypeVar("R")


class Transcriber:
    """Spools a recording to disk, probes and decodes it once, routes it to a backend, and always cleans up.

    Two stages are bounded apart: `upload_gate` counts recordings being received or probed, and each backend's
    gate counts recordings that are ready for that backend's workers (running or queued), so slow uploaders never
    hold a place meant for work.
    """

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
        retry_after_seconds: float = 1.0,
        probe_workers: int = 2,
    ) -> None:
        self._store = store
        self._backends = dict(backends)
        self._default = default_backend
        self._limits = dict(upload_limits)
        self._max_seconds = max_audio_seconds
        queues = queue_sizes or {}
        self.gates = {
            kind: AdmissionGate(f"{kind.value} backend", backend.workers + queues.get(kind, 0), retry_after_seconds)
            for kind, backend in self._backends.items()
        }
        self.upload_gate = AdmissionGate("upload stage", max_concurrent_uploads, retry_after_seconds)
        self._probe_pool = ThreadPoolExecutor(max_workers=probe_workers, thread_name_prefix="probe")
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Start every backend; the server reports SERVING only after this returns."""
        await asyncio.gather(*(backend.start() for backend in self._backends.values()))

    async def settle(self, within: float) -> bool:
        """Wait up to `within` seconds until no transcription is in progress, so every upload file is deleted by the
        call that made it; False when some are still running. A stopped gRPC server has cancelled its calls, but
        their handlers may not have run yet."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop every backend and the probing threads."""
        await asyncio.gather(*(backend.aclose() for backend in self._backends.values()))
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    def models(self) -> list[ModelDescription]:
        """Every model of every configured backend."""
        return [model for backend in self._backends.values() for model in backend.models()]

    def check(self, options: TranscriptionOptions) -> None:
        """Raise the error a transcription with these options would fail with before reading any audio."""
        self._backend_for(options)

    def upload_limit(self, options: TranscriptionOptions) -> int:
        """The most bytes a recording for these options may have (checked options only)."""
        kind, _ = self._backend_for(options)
        return self._limits[kind]

    async def transcribe(
        self,
        options: TranscriptionOptions | Callable[[], TranscriptionOptions],
        audio: AsyncIterable[bytes],
        *,
        deadline: float | None = None,
        abandoned: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
        segments: SegmentSink | None = None,
    ) -> Transcript:
        """Transcribe a finished recording whose bytes `audio` yields, in order.

        `deadline` is the caller's (time.monotonic() clock). A caller that dies mid-upload can look, for a moment,
        like one that finished, so `abandoned` is asked once the audio is probed: a cut-off recording is never
        handed to a backend as if it were complete. `progress` gets (seconds done, seconds in all). `segments`, when
        the backend can tell (the local backend, for recordings it transcribes in windows), gets the transcript's
        segments in order as they are finished, before the transcript is returned; some or all may come only in it.

        `options` may be a function called once `audio` is exhausted, for a face whose request can carry its
        options after the audio (a multipart form with the file first). The upload is then bounded by the largest
        limit of any backend while it arrives, and options, the chosen backend's limit and its capacity are checked
        when it ends, still before probing.
        """
        if isinstance(options, TranscriptionOptions):
            kind, backend = self._admissible(options)
            limit = self._limits[kind]
        else:
            limit = max(self._limits[kind] for kind in self._backends)
        self._calls += 1
        self._idle.clear()
        upload = self._store.new_upload(limit)
        try:
            with self.upload_gate.admit():
                async for chunk in audio:
                    await upload.write(chunk)
                await upload.finish()
                if not isinstance(options, TranscriptionOptions):
                    options = options()
                    kind, backend = self._admissible(options)
                    upload.check_size(self._limits[kind])
                if upload.size == 0:
                    raise EmptyAudio("the request carries no audio bytes")
                file = await self._probe(upload, options)
            if abandoned():
                raise asyncio.CancelledError("the caller went away before its audio was complete")
            with self.gates[kind].admit():
                reporting = finished_segments.set(segments)
                try:
                    transcript = await backend.transcribe(file, options, deadline, progress)
                finally:
                    finished_segments.reset(reporting)
            return replace(transcript, duration=file.info.duration)
        finally:
            upload.discard()
            self._calls -= 1
            if self._calls == 0:
                self._idle.set()
                with contextlib.suppress(RuntimeError):  # the pool is already shut down
                    asyncio.get_running_loop().run_in_executor(self._probe_pool, release_free_memory)

    def _admissible(self, options: TranscriptionOptions) -> tuple[BackendKind, TranscriptionBackend]:
        kind, backend = self._backend_for(options)
        self.gates[kind].check()  # refuse at once when ready work already fills the backend
        return kind, backend

    def _backend_for(self, options: TranscriptionOptions) -> tuple[BackendKind, TranscriptionBackend]:
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

    async def _probe(self, upload: Upload, options: TranscriptionOptions) -> AudioFile:
        path = upload.path
        if options.raw_pcm is not None:
            path = upload.sibling("wav")
            await in_thread(functools.partial(wrap_pcm_as_wav, upload.path, path, options.raw_pcm), self._probe_pool)
        whisper_input = upload.sibling("s16")
        info = await in_thread(functools.partial(probe, path, self._max_seconds, whisper_input), self._probe_pool)
        if path == upload.path:
            path = upload.rename(info.extension)
        log.debug("probed upload: %s", info)
        return AudioFile(path=str(path), info=info, whisper_input=str(whisper_input))


async def one_chunk(content: bytes) -> AsyncIterator[bytes]:
    """A source of bytes for a recording sent whole."""
    yield content


class IdleLimited(Generic[R]):
    """Passes items on; raises StreamIdle when the source sends nothing for `seconds`."""

    def __init__(self, items: AsyncIterator[R], seconds: float) -> None:
        self._items = items
        self._seconds = seconds

    def __aiter__(self) -> IdleLimited[R]:
        return self

    async def __anext__(self) -> R:
        # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that arrives in the same loop turn
        # as the item, and gRPC ends a dead client's stream and cancels the call in that very turn.
        try:
            async with asyncio.timeout(self._seconds):
                return await anext(self._items)
        except TimeoutError:
            raise StreamIdle(
                f"the stream sent nothing for {self._seconds:g} seconds",
                metadata={"idle_timeout_seconds": f"{self._seconds:g}"},
            ) from None


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

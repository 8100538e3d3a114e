"""Synchronous and asyncio clients for transcribe.v1.TranscribeService."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import stat
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Generic, Literal, Self, TypeVar

import google.longrunning.operations_pb2_grpc as lro_grpc  # type: ignore[import-untyped, unused-ignore]
import google.longrunning.operations_proto_pb2 as lro  # type: ignore[import-untyped, unused-ignore]
import grpc
from google.protobuf import duration_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc
from transcribe_client.errors import TranscribeError, from_rpc_error
from transcribe_client.jobs import (
    MAX_PAGE_SIZE,
    OPERATIONS_COLLECTION,
    PROGRESS_INTERVAL_SECONDS,
    WAIT_SLICE_SECONDS,
    AsyncJobFuture,
    Job,
    JobFuture,
    JobProgressCallback,
    JobStateArg,
    WaitBudget,
    jobs_filter,
    settled,
    wait_request,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "LIVE_CHUNK_SECONDS",
    "SERVICE_NAME",
    "STREAM_THRESHOLD",
    "AsyncTranscribeClient",
    "Audio",
    "BackendName",
    "LiveAudioFormatName",
    "Metadata",
    "PcmFormat",
    "ProgressCallback",
    "TaskName",
    "TranscribeClient",
    "channel_options",
    "live_config",
    "resolve_target",
    "service_config",
    "transcription_config",
]

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT = 300.0
DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
STREAM_THRESHOLD = 4 * 1024 * 1024
LIVE_CHUNK_SECONDS = 0.1
"""The audio a live caller should send per message: 100 ms keeps latency low without flooding the stream."""
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["TranscribeService"].full_name
USER_AGENT = "transcribe-client-python/0.1"

# The server accepts client pings down to one every 10 s and closes a connection that pings faster twice; every 30 s
# keeps idle connections alive with a wide margin.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

BackendName = Literal["local", "openai"]
TaskName = Literal["transcribe", "translate"]
LiveAudioFormatName = Literal["linear16", "webm-opus", "ogg-opus"]
Metadata = Sequence[tuple[str, str]]
"""Extra request metadata: (key, value) pairs sent with one call, after the client's authorization."""
Audio = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes sent so far, total bytes or None when the size is unknown)."""

_E = TypeVar("_E", bound=int)
_OperationsStub: Any = lro_grpc.OperationsStub
"""google.longrunning.Operations' client stub (generated without type hints)."""
_StreamRequest = TypeVar("_StreamRequest", pb.TranscribeStreamRequest, pb.SubmitTranscriptionStreamRequest)

_BACKENDS: dict[str, pb.Backend.ValueType] = {"local": pb.BACKEND_LOCAL, "openai": pb.BACKEND_OPENAI}
_TASKS: dict[str, pb.Task.ValueType] = {"transcribe": pb.TASK_TRANSCRIBE, "translate": pb.TASK_TRANSLATE}
_LIVE_FORMATS: dict[str, pb.LiveAudioFormat.ValueType] = {
    "linear16": pb.LIVE_AUDIO_FORMAT_LINEAR16,
    "webm-opus": pb.LIVE_AUDIO_FORMAT_WEBM_OPUS,
    "ogg-opus": pb.LIVE_AUDIO_FORMAT_OGG_OPUS,
}


@dataclass(frozen=True)
class PcmFormat:
    """The layout of headerless signed 16-bit little-endian PCM audio."""

    sample_rate_hertz: int
    channels: int = 1


def service_config() -> dict[str, Any]:
    """The gRPC service config: round-robin balancing, and retries on UNAVAILABLE of the idempotent unary methods
    (every Operations method; not SubmitTranscription, which would store a second job)."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": SERVICE_NAME, "method": "Transcribe"},
                    {"service": SERVICE_NAME, "method": "ListModels"},
                    *(
                        {"service": "google.longrunning.Operations", "method": method}
                        for method in (
                            "GetOperation",
                            "ListOperations",
                            "WaitOperation",
                            "CancelOperation",
                            "DeleteOperation",
                        )
                    ),
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


def channel_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra: Sequence[tuple[str, Any]] = (),
) -> list[tuple[str, Any]]:
    """The channel arguments every client channel is created with (extra ones override)."""
    options: dict[str, Any] = {
        "grpc.service_config": json.dumps(service_config()),
        "grpc.enable_retries": 1,
        # A retried request must be buffered whole; the default buffer (256 KiB) disables retries
        # for any request larger than that.
        "grpc.per_rpc_retry_buffer_size": max_message_bytes,
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
        "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
        "grpc.keepalive_permit_without_calls": 0,
        # Keep pinging while the server works on a long transcription and sends no data.
        "grpc.http2.max_pings_without_data": 0,
        "grpc.primary_user_agent": USER_AGENT,
    }
    options.update(extra)
    return list(options.items())


def resolve_target(target: str | Sequence[str]) -> str:
    """A gRPC target string: "host:port" and URIs pass through; a list of IP addresses becomes ipv4:/ipv6:."""
    if isinstance(target, str):
        if not target.strip():
            raise ValueError("the target address is empty")
        return target
    addresses = [address.strip() for address in target]
    if not addresses or not all(addresses):
        raise ValueError("a list of addresses must not be empty")
    families = {_address_family(address) for address in addresses}
    if len(families) != 1:
        raise ValueError("a list of addresses must be all IPv4 or all IPv6 'ip:port' literals")
    return f"{families.pop()}:{','.join(addresses)}"


def _address_family(address: str) -> str:
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"address {address!r} is not 'ip:port'")
    try:
        ip = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ValueError(
            f"address {address!r} is not an IP literal; pass a host name as one 'dns:///host:port' target"
        ) from None
    return "ipv4" if ip.version == 4 else "ipv6"


def transcription_config(
    *,
    backend: BackendName | pb.Backend.ValueType | None = None,
    model: str = "",
    language: str = "",
    prompt: str = "",
    temperature: float | None = None,
    task: TaskName | pb.Task.ValueType = "transcribe",
    word_timestamps: bool = False,
    pcm: PcmFormat | None = None,
) -> pb.TranscriptionConfig:
    """Build the TranscriptionConfig message from friendly arguments."""
    config = pb.TranscriptionConfig(
        backend=_enum(backend, _BACKENDS, "backend") if backend is not None else pb.BACKEND_UNSPECIFIED,
        model=model,
        language_code=language,
        prompt=prompt,
        task=_enum(task, _TASKS, "task"),
        enable_word_time_offsets=word_timestamps,
    )
    if temperature is not None:
        config.temperature = temperature
    if pcm is not None:
        config.explicit_decoding_config.CopyFrom(
            pb.ExplicitDecodingConfig(
                encoding=pb.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=pcm.sample_rate_hertz,
                audio_channel_count=pcm.channels,
            )
        )
    return config


def live_config(
    *,
    sample_rate: int = 16000,
    channels: int = 1,
    audio_format: LiveAudioFormatName | pb.LiveAudioFormat.ValueType = "linear16",
    interim_results: bool = True,
    voice_activity_events: bool = False,
    speech_start_timeout: float | None = None,
    speech_end_timeout: float | None = None,
    backend: BackendName | pb.Backend.ValueType | None = None,
    model: str = "",
    language: str = "",
    prompt: str = "",
    temperature: float | None = None,
    task: TaskName | pb.Task.ValueType = "transcribe",
    word_timestamps: bool = False,
) -> pb.LiveConfig:
    """Build the LiveConfig message; the rate and channels are sent only for LINEAR16, timeouts are in seconds."""
    config = pb.LiveConfig(
        config=transcription_config(
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
        ),
        interim_results=interim_results,
        voice_activity_events=voice_activity_events,
        audio_format=_enum(audio_format, _LIVE_FORMATS, "audio format"),
    )
    if config.audio_format == pb.LIVE_AUDIO_FORMAT_LINEAR16:
        config.sample_rate_hertz = sample_rate
        config.audio_channel_count = channels
    if speech_start_timeout is not None:
        config.speech_start_timeout.CopyFrom(_duration(speech_start_timeout, "speech_start_timeout"))
    if speech_end_timeout is not None:
        config.speech_end_timeout.CopyFrom(_duration(speech_end_timeout, "speech_end_timeout"))
    return config


def _duration(seconds: float, what: str) -> duration_pb2.Duration:
    if not seconds >= 0:
        raise ValueError(f"{what} must be zero or more seconds, got {seconds!r}")
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _live_deadline(timeout: float | None) -> float | None:
    """A live call has no deadline unless one is given: a session lasts as long as its audio."""
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive")
    return None if timeout is None else float(timeout)


def _call_metadata(settings: _Settings, extra: Metadata) -> tuple[tuple[str, str], ...]:
    return (*settings.metadata, *((str(key), str(value)) for key, value in extra))


def _page_size(page_size: int | None) -> int:
    """The ListOperations page size; 0 asks for the server's default."""
    if page_size is None:
        return 0
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
    return page_size


def _wait_slice(settings: _Settings, on_progress: JobProgressCallback | None) -> float:
    """How long one WaitOperation call may wait: about a second when progress is shown, never beyond the
    client's deadline."""
    return min(PROGRESS_INTERVAL_SECONDS if on_progress is not None else WAIT_SLICE_SECONDS, settings.timeout)


def _chunk_bytes(chunk: object) -> bytes:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise TypeError(f"live audio chunks must be bytes, got {type(chunk).__name__}")
    return bytes(chunk)


def _enum(value: str | _E, names: dict[str, _E], what: str) -> _E:
    if isinstance(value, str):
        try:
            return names[value.lower()]
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(names)}") from None
    return value


class _Settings:
    """What both clients share: channel arguments, deadlines, metadata and chunking."""

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float,
        chunk_size: int,
        stream_threshold: int,
        tls: bool,
        root_certificates: bytes | None,
        certificate_chain: bytes | None,
        private_key: bytes | None,
        credentials: grpc.ChannelCredentials | None,
        token: str | None,
        max_message_bytes: int,
        options: Sequence[tuple[str, Any]],
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key must be given together")
        self.target = resolve_target(target)
        self.timeout = float(timeout)
        self.chunk_size = chunk_size
        self.stream_threshold = stream_threshold
        self.options = channel_options(max_message_bytes=max_message_bytes, extra=options)
        self.credentials = credentials
        if credentials is None and (tls or root_certificates or certificate_chain):
            self.credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()

    def deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        return float(timeout)

    def use_stream(self, stream: bool | None, size: int | None) -> bool:
        if stream is not None:
            return stream
        return size is None or size > self.stream_threshold

    def submit_streams(self, stream: bool | None, source: _AudioSource) -> bool:
        """A job's audio is uploaded in chunks unless it is small bytes already in memory."""
        if stream is not None:
            return stream
        return not source.in_memory or source.size is None or source.size > self.stream_threshold


@dataclass(frozen=True)
class _Uri:
    """Audio the server fetches from an http or https URI."""

    value: str


def _source_of(audio: Audio | None, uri: str | None, stream: bool | None) -> Audio | _Uri:
    """The one audio source a call names: the audio given, or the URI."""
    if audio is not None and uri is not None:
        raise ValueError("pass either audio or uri=, not both")
    if uri is None:
        if audio is None:
            raise ValueError("pass the audio (a path, bytes or a binary file) or uri=")
        return audio
    if not uri.strip():
        raise ValueError("uri is empty")
    if stream:
        raise ValueError("audio from a URI is fetched by the server and never streamed; leave stream unset")
    return _Uri(uri.strip())


class _AudioSource:
    """An audio input opened for one call: in-memory bytes or a binary file read lazily."""

    def __init__(self, audio: Audio) -> None:
        self._data: memoryview | None = None
        self._file: IO[bytes] | None = None
        self._owned = False
        self.size: int | None
        if isinstance(audio, bytes | bytearray | memoryview):
            self._data = memoryview(audio).cast("B")
            self.size = self._data.nbytes
        elif isinstance(audio, str | os.PathLike):
            self._file = open(audio, "rb")  # noqa: SIM115 - closed by close()
            self._owned = True
            status = os.fstat(self._file.fileno())
            # A FIFO such as bash's <(command) has no size and is streamed.
            self.size = status.st_size if stat.S_ISREG(status.st_mode) else None
        else:
            self._file = audio
            self.size = _remaining_size(audio)

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def read_all(self) -> bytes:
        if self._data is not None:
            return self._data.tobytes()
        return self._file.read() if self._file is not None else b""

    def read(self, size: int, offset: int) -> bytes:
        """The next chunk; offset is only used for in-memory data."""
        if self._data is not None:
            return self._data[offset : offset + size].tobytes()
        return self._file.read(size) if self._file is not None else b""

    def chunks(self, size: int) -> Iterator[bytes]:
        offset = 0
        while chunk := self.read(size, offset):
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._owned and self._file is not None:
            self._file.close()


def _remaining_size(file: IO[bytes]) -> int | None:
    """The bytes left in a seekable file, or None for pipes, sockets and terminals."""
    try:
        if not file.seekable():
            return None
        position = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(position)
    except (OSError, ValueError):
        return None
    return max(end - position, 0)


class _Upload(Generic[_StreamRequest]):
    """The request stream of one sync upload call (TranscribeStream, SubmitTranscriptionStream): the config, then
    the audio in chunks; it cancels the call if reading fails."""

    def __init__(
        self,
        message: type[_StreamRequest],
        config: pb.TranscriptionConfig,
        source: _AudioSource,
        chunk_size: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.message: type[_StreamRequest] = message
        self.config = config
        self.source = source
        self.chunk_size = chunk_size
        self.progress = progress
        self.error: Exception | None = None
        self._future: Any = None
        self._attached = threading.Event()

    def attach(self, future: Any) -> None:
        self._future = future
        self._attached.set()

    def requests(self) -> Iterator[_StreamRequest]:
        yield self.message(config=self.config)
        sent = 0
        try:
            for chunk in self.source.chunks(self.chunk_size):
                # gRPC asks for the next message once the previous one was sent.
                yield self.message(audio_content=chunk)
                sent += len(chunk)
                if self.progress is not None:
                    self.progress(sent, self.source.size)
            if self.progress is not None and self.source.size != sent:
                self.progress(sent, sent)  # the size is now known
        except Exception as exc:
            # Raising here would make gRPC log a traceback and fail the call as UNKNOWN;
            # cancel it instead so that transcribe() re-raises the original error.
            self.error = exc
            if self._attached.wait(timeout=10.0) and self._future is not None:
                _cancel_before_half_close(self._future)


def _cancel_before_half_close(call: Any) -> None:
    """Cancel a sync call from its request iterator, and return only once it has ended: returning ends the
    iterator, which gRPC sends as a half-close, and a half-close that overtook the cancellation would let the server
    finish the call on the partial audio."""
    ended = threading.Event()
    call.add_done_callback(lambda _: ended.set())
    call.cancel()
    ended.wait(timeout=10.0)


class _LiveRequests:
    """The request stream of one sync TranscribeLive call: the config, then the caller's chunks.

    gRPC pulls it on a thread of its own. A source that raises cancels the call, and live() re-raises the source's
    error instead of gRPC logging a traceback and failing the call as UNKNOWN.
    """

    def __init__(self, config: pb.LiveConfig, chunks: Iterable[bytes]) -> None:
        self.config = config
        self.chunks = chunks
        self.error: Exception | None = None
        self._call: Any = None
        self._attached = threading.Event()

    def attach(self, call: Any) -> None:
        self._call = call
        self._attached.set()

    def requests(self) -> Iterator[pb.TranscribeLiveRequest]:
        yield pb.TranscribeLiveRequest(live_config=self.config)
        try:
            for chunk in self.chunks:
                data = _chunk_bytes(chunk)
                if data:
                    yield pb.TranscribeLiveRequest(audio_content=data)
        except Exception as exc:
            self.error = exc
            if self._attached.wait(timeout=10.0) and self._call is not None:
                _cancel_before_half_close(self._call)


class TranscribeClient:
    """A blocking client for TranscribeService; use it as a context manager or call close()."""

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        stream_threshold: int = STREAM_THRESHOLD,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        self._settings = _Settings(
            target,
            timeout=timeout,
            chunk_size=chunk_size,
            stream_threshold=stream_threshold,
            tls=tls,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            credentials=credentials,
            token=token,
            max_message_bytes=max_message_bytes,
            options=options,
        )
        settings = self._settings
        self._owns_channel = channel is None
        if channel is not None:
            self._channel = channel
        elif settings.credentials is not None:
            self._channel = grpc.secure_channel(settings.target, settings.credentials, options=settings.options)
        else:
            self._channel = grpc.insecure_channel(settings.target, options=settings.options)
        self._stub = pb_grpc.TranscribeServiceStub(self._channel)
        self._operations_stub: Any = None

    @property
    def target(self) -> str:
        """The resolved gRPC target."""
        return self._settings.target

    @property
    def options(self) -> list[tuple[str, Any]]:
        """The channel arguments the client's own channel is (or would be) created with."""
        return list(self._settings.options)

    @property
    def _operations(self) -> Any:
        """The google.longrunning.Operations stub on the same channel, made on first use."""
        if self._operations_stub is None:
            self._operations_stub = _OperationsStub(self._channel)
        return self._operations_stub

    def transcribe(
        self,
        audio: Audio | None = None,
        *,
        uri: str | None = None,
        stream: bool | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        pcm: PcmFormat | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> pb.Transcript:
        """Transcribe a file path, bytes or binary file object; stream=None streams large or unsized input.

        With uri= instead of audio, the server fetches the recording from that http or https URI.
        """
        config = transcription_config(
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
            pcm=pcm,
        )
        deadline = self._settings.deadline(timeout)
        audio_source = _source_of(audio, uri, stream)
        if isinstance(audio_source, _Uri):
            return self._transcribe(pb.TranscribeRequest(config=config, uri=audio_source.value), deadline)
        source = _AudioSource(audio_source)
        try:
            if self._settings.use_stream(stream, source.size):
                response: pb.TranscribeStreamResponse = self._stream(
                    self._stub.TranscribeStream,
                    pb.TranscribeStreamRequest,
                    config,
                    source,
                    deadline=deadline,
                    progress=progress,
                )
                return response.transcript
            return self._transcribe(pb.TranscribeRequest(config=config, content=source.read_all()), deadline)
        finally:
            source.close()

    def _transcribe(self, request: pb.TranscribeRequest, deadline: float) -> pb.Transcript:
        try:
            response: pb.TranscribeResponse = self._stub.Transcribe(
                request, timeout=deadline, metadata=self._settings.metadata
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return response.transcript

    def _stream(
        self,
        method: Any,
        message: type[_StreamRequest],
        config: pb.TranscriptionConfig,
        source: _AudioSource,
        *,
        deadline: float,
        progress: ProgressCallback | None,
    ) -> Any:
        """Upload the config and then the audio in chunks with a client-streaming method; its response."""
        upload = _Upload(message, config, source, self._settings.chunk_size, progress)
        future = method.future(upload.requests(), timeout=deadline, metadata=self._settings.metadata)
        upload.attach(future)
        try:
            return future.result()
        except (grpc.RpcError, grpc.FutureCancelledError) as err:
            if upload.error is not None:
                raise upload.error from None
            if isinstance(err, grpc.RpcError):
                raise from_rpc_error(err) from err
            raise TranscribeError(grpc.StatusCode.CANCELLED, "the call was cancelled") from err
        except BaseException:
            future.cancel()
            raise

    def submit(
        self,
        audio: Audio | None = None,
        *,
        uri: str | None = None,
        stream: bool | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        pcm: PcmFormat | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Job:
        """Start a transcription job and return it (queued) as soon as the server has stored it.

        Files and file objects are uploaded in chunks with SubmitTranscriptionStream; small bytes in memory and
        uri= (fetched by the server when the job runs) go in one SubmitTranscription message. stream=True/False
        forces either way for audio. A full job queue raises TranscribeError RESOURCE_EXHAUSTED (JOB_QUEUE_FULL,
        with retry_delay). Follow the job with wait_job(job.name), get_job or job_future(job).
        """
        config = transcription_config(
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
            pcm=pcm,
        )
        deadline = self._settings.deadline(timeout)
        audio_source = _source_of(audio, uri, stream)
        if isinstance(audio_source, _Uri):
            return self._submit(pb.SubmitTranscriptionRequest(config=config, uri=audio_source.value), deadline)
        source = _AudioSource(audio_source)
        try:
            if self._settings.submit_streams(stream, source):
                operation = self._stream(
                    self._stub.SubmitTranscriptionStream,
                    pb.SubmitTranscriptionStreamRequest,
                    config,
                    source,
                    deadline=deadline,
                    progress=progress,
                )
                return Job.from_operation(operation)
            return self._submit(pb.SubmitTranscriptionRequest(config=config, content=source.read_all()), deadline)
        finally:
            source.close()

    def _submit(self, request: pb.SubmitTranscriptionRequest, deadline: float) -> Job:
        try:
            operation = self._stub.SubmitTranscription(request, timeout=deadline, metadata=self._settings.metadata)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return Job.from_operation(operation)

    def get_job(self, name: str, *, timeout: float | None = None) -> Job:
        """The job as it is now (GetOperation); an unknown name raises TranscribeError NOT_FOUND (JOB_NOT_FOUND)."""
        return Job.from_operation(self._operation_call("GetOperation", lro.GetOperationRequest(name=name), timeout))

    def list_jobs(
        self,
        *,
        state: JobStateArg | Iterable[JobStateArg] | None = None,
        done: bool | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Job]:
        """Every job, newest first, in any of the states given and (when done is given) done or not.

        The iterator asks for one page (page_size jobs, default the server's 50, at most 1000) at a time, as it
        is read; timeout is the deadline of each page's call.
        """
        query = jobs_filter(state, done)
        size = _page_size(page_size)
        deadline = self._settings.deadline(timeout)
        return self._list_jobs(query, size, deadline)

    def _list_jobs(self, query: str | None, page_size: int, deadline: float) -> Iterator[Job]:
        if query is None:
            return
        token = ""
        while True:
            request = lro.ListOperationsRequest(
                name=OPERATIONS_COLLECTION, filter=query, page_size=page_size, page_token=token
            )
            try:
                response = self._operations.ListOperations(request, timeout=deadline, metadata=self._settings.metadata)
            except grpc.RpcError as err:
                raise from_rpc_error(err) from err
            for operation in response.operations:
                yield Job.from_operation(operation)
            token = str(response.next_page_token)
            if not token:
                return

    def wait_job(
        self,
        name: str,
        *,
        timeout: float | None = None,
        on_progress: JobProgressCallback | None = None,
    ) -> Job:
        """Wait until the job is done and return it with its transcript (WaitOperation, again and again).

        A failed job raises its TranscribeError (the code and reason a direct call would have failed with); a
        cancelled one raises JobCancelledError. timeout (seconds, None for no limit) bounds the whole wait and
        raises TimeoutError when it passes first. on_progress is called with the job about every second.
        """
        return settled(self.wait_job_done(name, timeout=timeout, on_progress=on_progress))

    def wait_job_done(
        self, name: str, *, timeout: float | None = None, on_progress: JobProgressCallback | None = None
    ) -> Job:
        """As wait_job, but the job is returned whatever its outcome: a failed or cancelled one carries its error
        in `error` instead of raising it. TimeoutError when timeout passes first."""
        budget = WaitBudget(timeout, slice_seconds=_wait_slice(self._settings, on_progress))
        while True:
            plan = wait_request(name, budget.next_wait())
            if plan is None:
                job = self.get_job(name)
            else:
                request, deadline = plan
                job = Job.from_operation(self._operation_call("WaitOperation", request, deadline))
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if budget.expired():
                raise budget.timeout_error(job)

    def cancel_job(self, name: str, *, timeout: float | None = None) -> None:
        """Cancel the job: a queued job never starts, a running one stops; it ends CANCELLED (JOB_CANCELLED)."""
        self._operation_call("CancelOperation", lro.CancelOperationRequest(name=name), timeout)

    def delete_job(self, name: str, *, timeout: float | None = None) -> None:
        """Delete the job's record and audio, cancelling it first if it is still running."""
        self._operation_call("DeleteOperation", lro.DeleteOperationRequest(name=name), timeout)

    def job_future(self, job: Job | str) -> JobFuture:
        """A future for the job (a Job, or a name that is looked up now)."""
        return JobFuture(self, job if isinstance(job, Job) else self.get_job(job))

    def _operation_call(self, method: str, request: Any, timeout: float | None) -> Any:
        """Call a google.longrunning.Operations method and return its response."""
        try:
            return getattr(self._operations, method)(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    def live(
        self,
        chunks: Iterable[bytes],
        *,
        sample_rate: int = 16000,
        channels: int = 1,
        audio_format: LiveAudioFormatName | pb.LiveAudioFormat.ValueType = "linear16",
        interim_results: bool = True,
        voice_activity_events: bool = False,
        speech_start_timeout: float | None = None,
        speech_end_timeout: float | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Generator[pb.TranscribeLiveResponse, None, None]:
        """Transcribe audio while it is spoken (TranscribeLive): yields the server's responses as they come.

        chunks yields the audio in order (for LINEAR16, 16-bit little-endian PCM at sample_rate with channels
        interleaved; about LIVE_CHUNK_SECONDS each) and is read on a gRPC thread, at the pace it yields; when it ends
        the stream is half-closed and the server sends the last final result. The call starts when iteration
        begins; close() the generator (or leave a loop over it early) to cancel it. Unlike the other calls a live
        call has no deadline unless timeout is given, since it lasts as long as its audio. Errors raise
        TranscribeError; an exception from chunks cancels the call and is re-raised as it is.
        """
        config = live_config(
            sample_rate=sample_rate,
            channels=channels,
            audio_format=audio_format,
            interim_results=interim_results,
            voice_activity_events=voice_activity_events,
            speech_start_timeout=speech_start_timeout,
            speech_end_timeout=speech_end_timeout,
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
        )
        return self._live(config, chunks, _live_deadline(timeout), _call_metadata(self._settings, metadata))

    def _live(
        self,
        config: pb.LiveConfig,
        chunks: Iterable[bytes],
        deadline: float | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> Generator[pb.TranscribeLiveResponse, None, None]:
        requests = _LiveRequests(config, chunks)
        call = self._stub.TranscribeLive(requests.requests(), timeout=deadline, metadata=metadata)
        requests.attach(call)
        try:
            yield from call
        except grpc.RpcError as err:
            if requests.error is not None:
                raise requests.error from None
            raise from_rpc_error(err) from err
        finally:
            call.cancel()  # a no-op once the call has ended; frees the session when the caller stops early
        if requests.error is not None:
            raise requests.error

    def list_models(self, *, timeout: float | None = None) -> list[pb.ModelInfo]:
        """The models the server can serve."""
        try:
            response: pb.ListModelsResponse = self._stub.ListModels(
                pb.ListModelsRequest(),
                timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return list(response.models)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The serving status from grpc.health.v1 ("SERVING", "NOT_SERVING", ...); "" is the whole server."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        """Close the channel, unless it was passed in."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTranscribeClient:
    """An asyncio (grpc.aio) client for TranscribeService; use it with `async with` or await close()."""

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        stream_threshold: int = STREAM_THRESHOLD,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        channel: aio.Channel | None = None,
    ) -> None:
        self._settings = _Settings(
            target,
            timeout=timeout,
            chunk_size=chunk_size,
            stream_threshold=stream_threshold,
            tls=tls,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            credentials=credentials,
            token=token,
            max_message_bytes=max_message_bytes,
            options=options,
        )
        settings = self._settings
        self._owns_channel = channel is None
        if channel is not None:
            self._channel = channel
        elif settings.credentials is not None:
            self._channel = aio.secure_channel(settings.target, settings.credentials, options=settings.options)
        else:
            self._channel = aio.insecure_channel(settings.target, options=settings.options)
        self._stub = pb_grpc.TranscribeServiceStub(self._channel)
        self._operations_stub: Any = None

    @property
    def target(self) -> str:
        """The resolved gRPC target."""
        return self._settings.target

    @property
    def options(self) -> list[tuple[str, Any]]:
        """The channel arguments the client's own channel is (or would be) created with."""
        return list(self._settings.options)

    @property
    def _operations(self) -> Any:
        """The google.longrunning.Operations stub on the same channel, made on first use."""
        if self._operations_stub is None:
            self._operations_stub = _OperationsStub(self._channel)
        return self._operations_stub

    async def transcribe(
        self,
        audio: Audio | None = None,
        *,
        uri: str | None = None,
        stream: bool | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        pcm: PcmFormat | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline, as in the sync client
        progress: ProgressCallback | None = None,
    ) -> pb.Transcript:
        """Transcribe a file path, bytes or binary file object; stream=None streams large or unsized input.

        With uri= instead of audio, the server fetches the recording from that http or https URI.
        """
        config = transcription_config(
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
            pcm=pcm,
        )
        deadline = self._settings.deadline(timeout)
        audio_source = _source_of(audio, uri, stream)
        if isinstance(audio_source, _Uri):
            return await self._transcribe(pb.TranscribeRequest(config=config, uri=audio_source.value), deadline)
        source = await asyncio.to_thread(_AudioSource, audio_source)
        try:
            if self._settings.use_stream(stream, source.size):
                response: pb.TranscribeStreamResponse = await self._stream(
                    self._stub.TranscribeStream,
                    pb.TranscribeStreamRequest,
                    config,
                    source,
                    deadline=deadline,
                    progress=progress,
                )
                return response.transcript
            content = source.read_all() if source.in_memory else await asyncio.to_thread(source.read_all)
            return await self._transcribe(pb.TranscribeRequest(config=config, content=content), deadline)
        finally:
            source.close()

    async def _transcribe(self, request: pb.TranscribeRequest, deadline: float) -> pb.Transcript:
        try:
            response: pb.TranscribeResponse = await self._stub.Transcribe(
                request, timeout=deadline, metadata=self._settings.metadata
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return response.transcript

    async def _stream(
        self,
        method: Any,
        message: type[_StreamRequest],
        config: pb.TranscriptionConfig,
        source: _AudioSource,
        *,
        deadline: float,
        progress: ProgressCallback | None,
    ) -> Any:
        """Upload the config and then the audio in chunks with a client-streaming method; its response."""
        call = method(timeout=deadline, metadata=self._settings.metadata)
        try:
            try:
                await call.write(message(config=config))
                sent = 0
                async for chunk in _read_chunks(source, self._settings.chunk_size):
                    await call.write(message(audio_content=chunk))
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, source.size)
                if progress is not None and source.size != sent:
                    progress(sent, sent)  # the size is now known
                await call.done_writing()
            except asyncio.InvalidStateError:
                pass  # the call already ended; awaiting it raises its status
            return await call
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        except BaseException:
            call.cancel()
            raise

    async def submit(
        self,
        audio: Audio | None = None,
        *,
        uri: str | None = None,
        stream: bool | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        pcm: PcmFormat | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
        progress: ProgressCallback | None = None,
    ) -> Job:
        """Start a transcription job and return it as soon as the server has stored it; as TranscribeClient.submit."""
        config = transcription_config(
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
            pcm=pcm,
        )
        deadline = self._settings.deadline(timeout)
        audio_source = _source_of(audio, uri, stream)
        if isinstance(audio_source, _Uri):
            return await self._submit(pb.SubmitTranscriptionRequest(config=config, uri=audio_source.value), deadline)
        source = await asyncio.to_thread(_AudioSource, audio_source)
        try:
            if self._settings.submit_streams(stream, source):
                operation = await self._stream(
                    self._stub.SubmitTranscriptionStream,
                    pb.SubmitTranscriptionStreamRequest,
                    config,
                    source,
                    deadline=deadline,
                    progress=progress,
                )
                return Job.from_operation(operation)
            content = source.read_all() if source.in_memory else await asyncio.to_thread(source.read_all)
            return await self._submit(pb.SubmitTranscriptionRequest(config=config, content=content), deadline)
        finally:
            source.close()

    async def _submit(self, request: pb.SubmitTranscriptionRequest, deadline: float) -> Job:
        try:
            operation = await self._stub.SubmitTranscription(
                request, timeout=deadline, metadata=self._settings.metadata
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return Job.from_operation(operation)

    async def get_job(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
    ) -> Job:
        """The job as it is now (GetOperation); an unknown name raises TranscribeError NOT_FOUND (JOB_NOT_FOUND)."""
        operation = await self._operation_call("GetOperation", lro.GetOperationRequest(name=name), timeout)
        return Job.from_operation(operation)

    def list_jobs(
        self,
        *,
        state: JobStateArg | Iterable[JobStateArg] | None = None,
        done: bool | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Job]:
        """Every job, newest first: `async for job in client.list_jobs(...)`; as TranscribeClient.list_jobs."""
        query = jobs_filter(state, done)
        size = _page_size(page_size)
        deadline = self._settings.deadline(timeout)
        return self._list_jobs(query, size, deadline)

    async def _list_jobs(self, query: str | None, page_size: int, deadline: float) -> AsyncIterator[Job]:
        if query is None:
            return
        token = ""
        while True:
            request = lro.ListOperationsRequest(
                name=OPERATIONS_COLLECTION, filter=query, page_size=page_size, page_token=token
            )
            response = await self._operation_call("ListOperations", request, deadline)
            for operation in response.operations:
                yield Job.from_operation(operation)
            token = str(response.next_page_token)
            if not token:
                return

    async def wait_job(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound on the whole wait, as in the sync client
        on_progress: JobProgressCallback | None = None,
    ) -> Job:
        """Wait until the job is done and return it with its transcript; as TranscribeClient.wait_job."""
        return settled(await self.wait_job_done(name, timeout=timeout, on_progress=on_progress))

    async def wait_job_done(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the whole wait, as in wait_job
        on_progress: JobProgressCallback | None = None,
    ) -> Job:
        """As TranscribeClient.wait_job_done: the job once it is done, whatever its outcome."""
        budget = WaitBudget(timeout, slice_seconds=_wait_slice(self._settings, on_progress))
        while True:
            plan = wait_request(name, budget.next_wait())
            if plan is None:
                job = await self.get_job(name)
            else:
                request, deadline = plan
                job = Job.from_operation(await self._operation_call("WaitOperation", request, deadline))
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if budget.expired():
                raise budget.timeout_error(job)

    async def cancel_job(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
    ) -> None:
        """Cancel the job: a queued job never starts, a running one stops; it ends CANCELLED (JOB_CANCELLED)."""
        await self._operation_call("CancelOperation", lro.CancelOperationRequest(name=name), timeout)

    async def delete_job(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
    ) -> None:
        """Delete the job's record and audio, cancelling it first if it is still running."""
        await self._operation_call("DeleteOperation", lro.DeleteOperationRequest(name=name), timeout)

    async def job_future(self, job: Job | str) -> AsyncJobFuture:
        """A future for the job (a Job, or a name that is looked up now)."""
        return AsyncJobFuture(self, job if isinstance(job, Job) else await self.get_job(job))

    async def _operation_call(
        self,
        method: str,
        request: Any,
        timeout: float | None,  # noqa: ASYNC109
    ) -> Any:
        """Call a google.longrunning.Operations method and return its response."""
        try:
            return await getattr(self._operations, method)(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    def live(
        self,
        chunks: AsyncIterable[bytes] | Iterable[bytes],
        *,
        sample_rate: int = 16000,
        channels: int = 1,
        audio_format: LiveAudioFormatName | pb.LiveAudioFormat.ValueType = "linear16",
        interim_results: bool = True,
        voice_activity_events: bool = False,
        speech_start_timeout: float | None = None,
        speech_end_timeout: float | None = None,
        backend: BackendName | pb.Backend.ValueType | None = None,
        model: str = "",
        language: str = "",
        prompt: str = "",
        temperature: float | None = None,
        task: TaskName | pb.Task.ValueType = "transcribe",
        word_timestamps: bool = False,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncGenerator[pb.TranscribeLiveResponse, None]:
        """Transcribe audio while it is spoken (TranscribeLive): `async for response in client.live(chunks)`.

        As TranscribeClient.live. chunks may be an async iterable, or a plain iterable that is then read on a worker
        thread (so it may block, like a microphone). aclose() cancels the call: leave a loop early inside
        `async with contextlib.aclosing(client.live(chunks)) as responses:` to free the session at once.
        """
        config = live_config(
            sample_rate=sample_rate,
            channels=channels,
            audio_format=audio_format,
            interim_results=interim_results,
            voice_activity_events=voice_activity_events,
            speech_start_timeout=speech_start_timeout,
            speech_end_timeout=speech_end_timeout,
            backend=backend,
            model=model,
            language=language,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=word_timestamps,
        )
        return self._live(config, chunks, _live_deadline(timeout), _call_metadata(self._settings, metadata))

    async def _live(
        self,
        config: pb.LiveConfig,
        chunks: AsyncIterable[bytes] | Iterable[bytes],
        deadline: float | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> AsyncGenerator[pb.TranscribeLiveResponse, None]:
        call = self._stub.TranscribeLive(timeout=deadline, metadata=metadata)
        failure: list[Exception] = []
        writer = asyncio.create_task(_write_live(call, config, chunks, failure))
        try:
            try:
                async for response in call:
                    yield response
            except grpc.RpcError as err:
                if failure:
                    raise failure[0] from None
                raise from_rpc_error(err) from err
            except asyncio.CancelledError:
                # A failing source cancels the call, and reading a cancelled call raises CancelledError.
                if failure and call.cancelled():
                    raise failure[0] from None
                raise
            if failure:
                raise failure[0]
        finally:
            writer.cancel()
            call.cancel()  # a no-op once the call has ended; frees the session when the caller stops early

    async def list_models(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
    ) -> list[pb.ModelInfo]:
        """The models the server can serve."""
        try:
            response: pb.ListModelsResponse = await self._stub.ListModels(
                pb.ListModelsRequest(),
                timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return list(response.models)

    async def health(
        self,
        service: str = "",
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline
    ) -> str:
        """The serving status from grpc.health.v1 ("SERVING", "NOT_SERVING", ...); "" is the whole server."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def close(self) -> None:
        """Close the channel, unless it was passed in."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _read_chunks(source: _AudioSource, size: int) -> AsyncIterator[bytes]:
    """The source's chunks, with file reads off the event loop."""
    if source.in_memory:
        for chunk in source.chunks(size):
            yield chunk
        return
    while chunk := await asyncio.to_thread(source.read, size, 0):
        yield chunk


async def _write_live(
    call: aio.StreamStreamCall[pb.TranscribeLiveRequest, pb.TranscribeLiveResponse],
    config: pb.LiveConfig,
    chunks: AsyncIterable[bytes] | Iterable[bytes],
    failure: list[Exception],
) -> None:
    """Send the config, then every chunk, then half-close; a failing source is recorded and cancels the call."""
    try:
        await call.write(pb.TranscribeLiveRequest(live_config=config))
        async for chunk in _live_chunks(chunks):
            if chunk:
                await call.write(pb.TranscribeLiveRequest(audio_content=chunk))
        await call.done_writing()
    except (asyncio.InvalidStateError, grpc.RpcError):
        return  # the call already ended; its reader raises the status
    except Exception as exc:
        failure.append(exc)
        call.cancel()


async def _live_chunks(chunks: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    """The chunks as bytes; a plain iterator is advanced on a worker thread, since it may block."""
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield _chunk_bytes(chunk)
        return
    if isinstance(chunks, list | tuple):
        for chunk in chunks:
            yield _chunk_bytes(chunk)
        return
    iterator = iter(chunks)
    while (item := await asyncio.to_thread(_next_or_none, iterator)) is not None:
        yield _chunk_bytes(item)


def _next_or_none(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)

"""Tests both clients over real gRPC against a small in-process fake of TranscribeService."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.client import SERVICE_NAME, AsyncTranscribeClient, TranscribeClient
from transcribe_client.errors import STATUS_DETAILS_KEY, TranscribeError

Context = Any


@dataclass
class Seen:
    """What the fake server saw of one call."""

    method: str
    token: str | None
    time_remaining: float


@dataclass
class FakeService:
    """A scriptable TranscribeService: echoes a digest of the audio it received."""

    address: str = ""
    seen: list[Seen] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    unavailable: Counter[str] = field(default_factory=Counter)

    async def _enter(self, method: str, context: Context) -> None:
        metadata = dict(context.invocation_metadata())
        self.seen.append(Seen(method, metadata.get("authorization"), context.time_remaining()))
        self.attempts[method] += 1
        if self.unavailable[method] > 0:
            self.unavailable[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")

    async def transcribe(self, request: pb.TranscribeRequest, context: Context) -> pb.TranscribeResponse:
        await self._enter("Transcribe", context)
        if request.config.language_code == "xx":
            await _abort_invalid_language(context)
        return pb.TranscribeResponse(transcript=_digest(request.content, 1))

    async def transcribe_stream(
        self, requests: AsyncIterator[pb.TranscribeStreamRequest], context: Context
    ) -> pb.TranscribeStreamResponse:
        await self._enter("TranscribeStream", context)
        first = await anext(requests)
        assert first.WhichOneof("streaming_request") == "config"
        chunks: list[bytes] = []
        async for request in requests:
            assert request.WhichOneof("streaming_request") == "audio_content"
            chunks.append(request.audio_content)
            if first.config.language_code == "xx":
                await _abort_invalid_language(context)
        return pb.TranscribeStreamResponse(transcript=_digest(b"".join(chunks), len(chunks)))

    async def list_models(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        await self._enter("ListModels", context)
        return pb.ListModelsResponse(models=[pb.ModelInfo(name="base", backend=pb.BACKEND_LOCAL)])


def _digest(audio: bytes, chunks: int) -> pb.Transcript:
    return pb.Transcript(text=hashlib.sha256(audio).hexdigest(), model=str(chunks))


async def _abort_invalid_language(context: Context) -> None:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="unknown language 'xx'")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="UNSUPPORTED_LANGUAGE", domain="transcribe.v1", metadata={"language_code": "xx"}
        )
    )
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="config.language_code", description="not a supported language"
                )
            ]
        )
    )
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        status.message,
        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
    )


def _handler(method: Callable[..., Awaitable[Any]], kind: Any, request: Any, response: Any) -> Any:
    return kind(method, request_deserializer=request.FromString, response_serializer=response.SerializeToString)


@pytest.fixture
async def fake_service() -> AsyncIterator[FakeService]:
    """The fake service on an ephemeral loopback port, with grpc.health.v1 alongside."""
    fake = FakeService()
    server = grpc.aio.server()
    handlers = {
        "Transcribe": _handler(
            fake.transcribe, grpc.unary_unary_rpc_method_handler, pb.TranscribeRequest, pb.TranscribeResponse
        ),
        "TranscribeStream": _handler(
            fake.transcribe_stream,
            grpc.stream_unary_rpc_method_handler,
            pb.TranscribeStreamRequest,
            pb.TranscribeStreamResponse,
        ),
        "ListModels": _handler(
            fake.list_models, grpc.unary_unary_rpc_method_handler, pb.ListModelsRequest, pb.ListModelsResponse
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


async def test_async_unary_carries_bytes_token_and_deadline(fake_service: FakeService) -> None:
    """The async client's unary call delivers the exact bytes with the token and the per-call deadline."""
    audio = bytes(range(256)) * 10
    async with AsyncTranscribeClient(fake_service.address, token="t0k", timeout=100) as client:
        transcript = await client.transcribe(audio, timeout=30)
    assert transcript.text == hashlib.sha256(audio).hexdigest()
    [seen] = fake_service.seen
    assert seen.method == "Transcribe"
    assert seen.token == "Bearer t0k"
    assert 25 < seen.time_remaining <= 31  # the deadline header is rounded up


async def test_async_stream_from_path_reports_progress(fake_service: FakeService, tmp_path: Path) -> None:
    """A streamed file arrives whole in chunk_size pieces, with progress after every chunk."""
    audio = bytes(index % 253 for index in range(100_000))
    path = tmp_path / "long.wav"
    path.write_bytes(audio)
    reports: list[tuple[int, int | None]] = []
    async with AsyncTranscribeClient(fake_service.address, chunk_size=32 * 1024) as client:
        transcript = await client.transcribe(
            path, stream=True, progress=lambda sent, total: reports.append((sent, total))
        )
    assert transcript.text == hashlib.sha256(audio).hexdigest()
    assert transcript.model == "4"
    assert reports == [(32768, 100_000), (65536, 100_000), (98304, 100_000), (100_000, 100_000)]
    assert fake_service.seen[0].time_remaining > 250  # the default 300 s deadline


async def test_async_errors_carry_error_info(fake_service: FakeService) -> None:
    """aio errors are parsed from the trailing metadata into reason, metadata and field violations."""
    async with AsyncTranscribeClient(fake_service.address) as client:
        with pytest.raises(TranscribeError) as unary:
            await client.transcribe(b"abc", language="xx")
        with pytest.raises(TranscribeError) as streamed:
            await client.transcribe(b"a" * 300_000, language="xx", stream=True)
    for caught in (unary, streamed):
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.reason == "UNSUPPORTED_LANGUAGE"
        assert caught.value.metadata == {"language_code": "xx"}
        assert caught.value.field_violations == [("config.language_code", "not a supported language")]
        assert str(caught.value) == "INVALID_ARGUMENT: unknown language 'xx' [UNSUPPORTED_LANGUAGE]"


async def test_async_models_and_health(fake_service: FakeService) -> None:
    """The async client lists models and reads grpc.health.v1 statuses."""
    async with AsyncTranscribeClient(fake_service.address) as client:
        assert [model.name for model in await client.list_models()] == ["base"]
        assert await client.health() == "SERVING"
        assert await client.health(SERVICE_NAME) == "NOT_SERVING"
        with pytest.raises(TranscribeError) as caught:
            await client.health("no.such.Service")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


async def test_async_read_error_cancels_the_upload(fake_service: FakeService) -> None:
    """A file that fails mid-upload cancels the async call and re-raises the OSError (a transcript of the partial
    audio would mean the upload was half-closed instead); the failed upload is not retried."""
    async with AsyncTranscribeClient(fake_service.address, chunk_size=10) as client:
        with pytest.raises(OSError, match="Input/output error"):
            await client.transcribe(failing_reader(), stream=True)
    assert fake_service.attempts["TranscribeStream"] <= 1  # the cancel may beat the call to the handler


async def test_sync_unary_is_retried_on_unavailable(fake_service: FakeService) -> None:
    """The fake_service config retries Transcribe and ListModels on UNAVAILABLE until one attempt succeeds."""
    fake_service.unavailable.update({"Transcribe": 2, "ListModels": 3})
    with TranscribeClient(fake_service.address) as client:
        transcript = await asyncio.to_thread(client.transcribe, b"retry me")
        models = await asyncio.to_thread(client.list_models)
    assert transcript.text == hashlib.sha256(b"retry me").hexdigest()
    assert [model.name for model in models] == ["base"]
    assert fake_service.attempts == Counter({"Transcribe": 3, "ListModels": 4})


async def test_sync_stream_is_not_retried(fake_service: FakeService) -> None:
    """TranscribeStream has no retry policy, so UNAVAILABLE reaches the caller after one attempt."""
    fake_service.unavailable["TranscribeStream"] = 1
    with TranscribeClient(fake_service.address) as client, pytest.raises(TranscribeError) as caught:
        await asyncio.to_thread(client.transcribe, b"once", stream=True)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert fake_service.attempts["TranscribeStream"] == 1


async def test_sync_stream_and_health(fake_service: FakeService, tmp_path: Path) -> None:
    """The sync client streams a file whole and reads the health status."""
    audio = b"\x01\x02" * 70_000
    path = tmp_path / "a.wav"
    path.write_bytes(audio)
    with TranscribeClient(fake_service.address, chunk_size=64 * 1024, token="abc") as client:
        transcript = await asyncio.to_thread(client.transcribe, str(path), stream=True)
        status = await asyncio.to_thread(client.health)
    assert transcript.text == hashlib.sha256(audio).hexdigest()
    assert transcript.model == "3"
    assert status == "SERVING"
    assert fake_service.seen[0].token == "Bearer abc"


async def test_sync_read_error_cancels_without_grpc_logging(
    fake_service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing read cancels the sync upload quietly and re-raises the OSError, not UNKNOWN nor a transcript of
    the partial audio. What the server's handler did is no proof either way: gRPC reads a cancelled request stream
    as ended before the server learns of the cancellation."""
    with (
        caplog.at_level(logging.ERROR),
        TranscribeClient(fake_service.address, chunk_size=10) as client,
        pytest.raises(OSError, match="Input/output error"),
    ):
        await asyncio.to_thread(client.transcribe, failing_reader(), stream=True)
    assert fake_service.attempts["TranscribeStream"] <= 1  # the cancel may beat the call to the handler
    assert not [record for record in caplog.records if record.name.startswith("grpc")]


def failing_reader() -> io.BufferedReader:
    """A pipe-like reader whose second read fails with EIO."""

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            self.reads += 1
            if self.reads > 1:
                raise OSError(5, "Input/output error")
            buffer[:10] = b"0123456789"
            return 10

    return io.BufferedReader(Failing(), buffer_size=10)

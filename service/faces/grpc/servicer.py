"""TranscribeService: converts messages to domain calls and back, nothing more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias, TypeVar

import grpc
from google.longrunning import operations_proto_pb2 as lro

from service.audio.fetch import UriFetcher
from service.core.live import LiveSession, LiveTranscriber
from service.core.transcriber import IdleLimited, Transcriber, one_chunk
from service.errors import FieldViolation, StreamOutOfOrder, TranscribeError
from service.faces.grpc.convert import (
    backend_to_proto,
    job_to_operation,
    live_event_to_proto,
    live_options_from_proto,
    model_to_proto,
    options_from_proto,
    transcript_to_proto,
)
from service.jobs.service import JobService
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_CONFIG_FIRST = FieldViolation("config", "must be set in the first message, and only there")
_LIVE_FIRST = FieldViolation("live_config", "must be set in the first message, and only there")
_NO_AUDIO = FieldViolation("audio_source", "must carry content or a uri")
_Request = TypeVar(
    "_Request", pb.TranscribeStreamRequest, pb.TranscribeLiveRequest, pb.SubmitTranscriptionStreamRequest
)
_Upload = TypeVar("_Upload", pb.TranscribeStreamRequest, pb.SubmitTranscriptionStreamRequest)


class TranscribeServicer(pb_grpc.TranscribeServiceServicer):
    """The transcribe.v1.TranscribeService RPCs."""

    def __init__(
        self,
        transcriber: Transcriber,
        live: LiveTranscriber,
        jobs: JobService,
        fetcher: UriFetcher,
        stream_idle_seconds: float,
    ) -> None:
        self._transcriber = transcriber
        self._live = live
        self._jobs = jobs
        self._fetcher = fetcher
        self._idle_seconds = stream_idle_seconds

    async def Transcribe(self, request: pb.TranscribeRequest, context: Context) -> pb.TranscribeResponse:  # noqa: N802
        """Unary: config and the whole file in one message, or a URI the server fetches."""
        options = options_from_proto(request.config)
        audio: AsyncIterator[bytes]
        if request.WhichOneof("audio_source") == "uri":
            self._transcriber.check(options)
            self._fetcher.check(request.uri)
            audio = self._fetcher.open(request.uri)
        else:
            audio = one_chunk(request.content)
        transcript = await self._transcriber.transcribe(options, audio, deadline=_deadline(context))
        return pb.TranscribeResponse(transcript=transcript_to_proto(transcript))

    async def SubmitTranscription(  # noqa: N802
        self, request: pb.SubmitTranscriptionRequest, context: Context
    ) -> lro.Operation:
        """A job for audio sent whole or named by a URI; its Operation once the job is stored."""
        options = options_from_proto(request.config)
        source = request.WhichOneof("audio_source")
        if source == "uri":
            job = await self._jobs.submit(options, uri=request.uri)
        elif source == "content":
            job = await self._jobs.submit(options, audio=one_chunk(request.content))
        else:
            raise StreamOutOfOrder("the request carries no audio", violations=[_NO_AUDIO])
        return job_to_operation(job)

    async def SubmitTranscriptionStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.SubmitTranscriptionStreamRequest], context: Context
    ) -> lro.Operation:
        """A job for a file uploaded in chunks (config first, exactly once); its Operation once the job is stored."""
        requests = _non_empty(IdleLimited(aiter(request_iterator), self._idle_seconds))
        first = await anext(requests, None)
        if first is None or first.WhichOneof("streaming_request") != "config":
            raise StreamOutOfOrder("the first message of the stream must carry config", violations=[_CONFIG_FIRST])
        options = options_from_proto(first.config)
        job = await self._jobs.submit(options, audio=_audio_chunks(requests), abandoned=context.cancelled)
        return job_to_operation(job)

    async def TranscribeStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.TranscribeStreamRequest], context: Context
    ) -> pb.TranscribeStreamResponse:
        """Client streaming: config first (exactly once), then audio chunks."""
        requests = _non_empty(IdleLimited(aiter(request_iterator), self._idle_seconds))
        first = await anext(requests, None)
        if first is None or first.WhichOneof("streaming_request") != "config":
            raise StreamOutOfOrder("the first message of the stream must carry config", violations=[_CONFIG_FIRST])
        transcript = await self._transcriber.transcribe(
            options_from_proto(first.config),
            _audio_chunks(requests),
            deadline=_deadline(context),
            abandoned=context.cancelled,
        )
        return pb.TranscribeStreamResponse(transcript=transcript_to_proto(transcript))

    async def TranscribeLive(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.TranscribeLiveRequest], context: Context
    ) -> AsyncIterator[pb.TranscribeLiveResponse]:
        """Bidirectional streaming: live_config first (exactly once), then audio; results while it arrives."""
        requests = _non_empty(IdleLimited(aiter(request_iterator), self._idle_seconds))
        first = await anext(requests, None)
        if first is None or first.WhichOneof("streaming_request") != "live_config":
            raise StreamOutOfOrder("the first message of the stream must carry live_config", violations=[_LIVE_FIRST])
        async with self._live.session(live_options_from_proto(first.live_config)) as session:
            feeding = asyncio.get_running_loop().create_task(_feed_live(session, requests))
            try:
                header = pb.TranscribeLiveResponse(backend=backend_to_proto(session.backend.kind), model=session.model)
                yield header
                async for event in session.events():
                    yield live_event_to_proto(event)
            finally:
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:  # noqa: N802
        """Every model the server can serve."""
        return pb.ListModelsResponse(models=[model_to_proto(m) for m in self._transcriber.models()])


def _deadline(context: Context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def _non_empty(requests: AsyncIterator[_Request]) -> AsyncIterator[_Request]:
    async for request in requests:
        if request.WhichOneof("streaming_request") is not None:
            yield request


async def _audio_chunks(requests: AsyncIterator[_Upload]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("streaming_request") == "config":
            raise StreamOutOfOrder("config may be sent only once, in the first message", violations=[_CONFIG_FIRST])
        yield request.audio_content


async def _feed_live(session: LiveSession, requests: AsyncIterator[pb.TranscribeLiveRequest]) -> None:
    try:
        async for request in requests:
            if request.WhichOneof("streaming_request") == "live_config":
                raise StreamOutOfOrder(
                    "live_config may be sent only once, in the first message", violations=[_LIVE_FIRST]
                )
            session.feed(request.audio_content)
        await session.finish()
    except TranscribeError as error:
        session.end_with(error)

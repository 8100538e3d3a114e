"""TranscribeService: converts messages to domain calls and back, nothing more."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from service.server.convert import model_to_proto, options_from_proto, transcript_to_proto
from service.transcriber import StreamItem, Transcriber
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class TranscribeServicer(pb_grpc.TranscribeServiceServicer):
    """The transcribe.v1.TranscribeService RPCs."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    async def Transcribe(self, request: pb.TranscribeRequest, context: Context) -> pb.TranscribeResponse:  # noqa: N802
        """Unary: config and the whole file in one message."""
        options = options_from_proto(request.config)
        transcript = await self._transcriber.transcribe_bytes(options, request.content, _deadline(context))
        return pb.TranscribeResponse(transcript=transcript_to_proto(transcript))

    async def TranscribeStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.TranscribeStreamRequest], context: Context
    ) -> pb.TranscribeStreamResponse:
        """Client streaming: config first, then audio chunks."""
        transcript = await self._transcriber.transcribe_stream(
            _stream_items(request_iterator), _deadline(context), context.cancelled
        )
        return pb.TranscribeStreamResponse(transcript=transcript_to_proto(transcript))

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:  # noqa: N802
        """Every model the server can serve."""
        return pb.ListModelsResponse(models=[model_to_proto(m) for m in self._transcriber.models()])


def _deadline(context: Context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def _stream_items(requests: AsyncIterator[pb.TranscribeStreamRequest]) -> AsyncIterator[StreamItem]:
    async for request in requests:
        kind = request.WhichOneof("streaming_request")
        if kind == "config":
            yield options_from_proto(request.config)
        elif kind == "audio_content":
            yield request.audio_content

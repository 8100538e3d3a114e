"""The call interceptor: request ids, domain errors mapped to statuses in one place, a log line and metrics per call."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc

from service.errors import TranscribeError
from service.server.errors import internal_status, status_code, to_status
from service.server.metrics import CallMetrics
from transcribe.v1 import transcribe_service_pb2 as pb

log = logging.getLogger("service.calls")

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

REQUEST_ID_HEADER = "x-request-id"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Linger:
    """How much of a refused stream is read and discarded before its status is sent (a lingering close).

    grpcio's asyncio client reports INTERNAL instead of the server's status when one of its writes races the end
    of a stream the server has already finished (https://github.com/grpc/grpc/issues/36066). Reading what the
    client still sends until it half-closes, within this budget, lets its writes succeed and its status arrive.
    """

    seconds: float = 2.0
    max_bytes: int = 8 * 1024 * 1024

    async def drain(self, requests: AsyncIterator[Any]) -> None:
        """Read and drop messages until the client half-closes, the time or byte budget runs out, or reading fails."""
        if self.seconds <= 0:
            return
        received = 0
        try:
            async with asyncio.timeout(self.seconds):
                async for message in requests:
                    received += message.ByteSize()
                    if received > self.max_bytes:
                        return
        except Exception:  # best effort: the status is sent whatever happens here
            return


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-response RPC: TranscribeError becomes its status with details, anything else INTERNAL."""

    def __init__(self, metrics: CallMetrics | None = None, linger: Linger | None = None) -> None:
        self._metrics = metrics
        self._linger = linger or Linger(seconds=0)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        incoming = metadata.get(REQUEST_ID_HEADER)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._observed(cast(Behavior, handler.unary_unary), method, incoming, streaming=False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._observed(cast(Behavior, handler.stream_unary), method, incoming, streaming=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _observed(self, behavior: Behavior, method: str, incoming: object, *, streaming: bool) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rid = incoming if isinstance(incoming, str) and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
            request_id.set(rid)
            # Trailing, not initial, metadata: headers sent early would commit the call and stop gRPC from
            # retrying it on another replica when this one dies mid-call.
            context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
            started = time.perf_counter()
            code, reason, response = grpc.StatusCode.OK, "", None
            if self._metrics is not None:
                self._metrics.in_flight.labels(method).inc()
            try:
                response = await behavior(request, context)
                return response
            except TranscribeError as error:
                code, reason = status_code(error), error.reason
                status = to_status(error)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = _code_of(context)
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                code, reason = grpc.StatusCode.INTERNAL, "INTERNAL"
                status = internal_status()
            finally:
                self._record(method, code, reason, time.perf_counter() - started, response)
            if streaming:
                await self._linger.drain(request)
            await context.abort(status.code, status.details, (*status.trailing_metadata, (REQUEST_ID_HEADER, rid)))
            return None  # unreachable: abort raises

        return call

    def _record(self, method: str, code: grpc.StatusCode, reason: str, seconds: float, response: Any) -> None:
        transcript = getattr(response, "transcript", None)
        audio, backend, model = None, "", ""
        if isinstance(transcript, pb.Transcript):
            audio = transcript.audio_duration.ToNanoseconds() / 1e9
            backend = pb.Backend.Name(transcript.backend).removeprefix("BACKEND_").lower()
            model = transcript.model
        log.info(
            "%s %s %.1fms",
            method,
            code.name,
            seconds * 1000,
            extra={
                "rpc_method": method,
                "code": code.name,
                "reason": reason or None,
                "latency_ms": round(seconds * 1000, 1),
                "audio_seconds": round(audio, 3) if audio is not None else None,
                "backend": backend or None,
                "model": model or None,
            },
        )
        if self._metrics is None:
            return
        self._metrics.in_flight.labels(method).dec()
        self._metrics.calls.labels(method, code.name).inc()
        self._metrics.latency.labels(method).observe(seconds)
        if audio is not None and backend:
            self._metrics.audio_seconds.labels(backend, model).inc(audio)
            if seconds > 0:
                self._metrics.real_time_factor.labels(backend, model).observe(audio / seconds)


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    by_value = {status.value[0]: status for status in grpc.StatusCode}
    return by_value.get(code, grpc.StatusCode.UNKNOWN) if isinstance(code, int) else grpc.StatusCode.UNKNOWN

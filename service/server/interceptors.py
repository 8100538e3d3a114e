"""The call interceptor: request ids, domain errors mapped to statuses in one place, a log line and metrics per call."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
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


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-response RPC: TranscribeError becomes its status with details, anything else INTERNAL."""

    def __init__(self, metrics: CallMetrics | None = None) -> None:
        self._metrics = metrics

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
                self._observed(cast(Behavior, handler.unary_unary), method, incoming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._observed(cast(Behavior, handler.stream_unary), method, incoming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _observed(self, behavior: Behavior, method: str, incoming: object) -> Behavior:
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

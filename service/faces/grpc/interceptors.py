"""gRPC interceptors: every call gets a request id, a log line and metrics, and its domain errors become statuses;
calls without a valid bearer token are refused."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc

from service.calls.auth import TokenCheck
from service.calls.context import REQUEST_ID_HEADER, begin_call
from service.calls.log import CallOutcome, CallRecorder
from service.errors import TranscribeError
from service.faces.grpc.errors import internal_status, status_code, to_status
from transcribe.v1 import transcribe_service_pb2 as pb

log = logging.getLogger("service.calls")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

_BIDIRECTIONAL_LINGER_SECONDS = 0.2
# Orchestrator probes must work without credentials.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True)
class Linger:
    """How much of a refused stream is read and discarded before its status is sent (a lingering close).

    grpcio's asyncio client reports INTERNAL instead of the server's status when one of its writes races the end
    of a stream the server has already finished (https://github.com/grpc/grpc/issues/36066). Reading what the
    client still sends until it half-closes, within this budget, lets its writes succeed and its status arrive.
    """

    seconds: float = 2.0
    max_bytes: int = 8 * 1024 * 1024

    async def drain(self, requests: AsyncIterator[Any], *, most_seconds: float | None = None) -> None:
        """Read and drop messages until the client half-closes, the time or byte budget runs out, or reading fails."""
        seconds = self.seconds if most_seconds is None else min(self.seconds, most_seconds)
        if seconds <= 0:
            return
        received = 0
        try:
            async with asyncio.timeout(seconds):
                async for message in requests:
                    received += message.ByteSize()
                    if received > self.max_bytes:
                        return
        except Exception:  # best effort: the status is sent whatever happens here
            return


class _Call:
    """One call in progress: its request id, start time and how it ends."""

    def __init__(self, recorder: CallRecorder, method: str, incoming: object, context: Context) -> None:
        self.rid = begin_call(incoming)
        # Trailing, not initial, metadata: headers sent early would commit the call and stop gRPC from retrying
        # it on another replica when this one dies mid-call.
        context.set_trailing_metadata(((REQUEST_ID_HEADER, self.rid),))
        self._recorder = recorder
        self._method = method
        self._started = time.perf_counter()
        recorder.started(method)

    def end(self, code: grpc.StatusCode, reason: str = "", response: Any = None) -> None:
        transcript = getattr(response, "transcript", None)
        audio, backend, model = None, "", ""
        if isinstance(transcript, pb.Transcript):
            audio = transcript.audio_duration.ToNanoseconds() / 1e9
            backend = pb.Backend.Name(transcript.backend).removeprefix("BACKEND_").lower()
            model = transcript.model
        self._recorder.finished(
            CallOutcome(
                method=self._method,
                code=code.name,
                seconds=time.perf_counter() - self._started,
                reason=reason,
                audio_seconds=audio,
                backend=backend,
                model=model,
            )
        )

    def status_of(self, error: BaseException) -> grpc.Status:
        """The status to send for an error, ending the call with it."""
        if isinstance(error, TranscribeError):
            status = to_status(error)
            self.end(status_code(error), error.reason)
        else:
            status = internal_status()
            self.end(grpc.StatusCode.INTERNAL, "INTERNAL")
        return status

    async def abort(self, context: Context, status: grpc.Status) -> None:
        await context.abort(status.code, status.details, (*status.trailing_metadata, (REQUEST_ID_HEADER, self.rid)))


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every RPC, whatever its shape: TranscribeError becomes its status with details, anything else INTERNAL."""

    def __init__(self, recorder: CallRecorder, linger: Linger | None = None) -> None:
        self._recorder = recorder
        self._linger = linger or Linger(seconds=0)

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        incoming = dict(details.invocation_metadata or ()).get(REQUEST_ID_HEADER)
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = self._unary(cast(UnaryBehavior, handler.unary_unary), method, incoming, streaming=False)
            return grpc.unary_unary_rpc_method_handler(behavior, **serializers)
        if handler.stream_unary is not None:
            behavior = self._unary(cast(UnaryBehavior, handler.stream_unary), method, incoming, streaming=True)
            return grpc.stream_unary_rpc_method_handler(behavior, **serializers)
        for streamer, streaming, make in (
            (handler.unary_stream, False, grpc.unary_stream_rpc_method_handler),
            (handler.stream_stream, True, grpc.stream_stream_rpc_method_handler),
        ):
            if streamer is None:
                continue
            # A streaming-response handler is an async generator, or a coroutine that calls context.write().
            if inspect.isasyncgenfunction(streamer):
                wrapped: Any = self._stream(cast(StreamBehavior, streamer), method, incoming, streaming=streaming)
            else:
                wrapped = self._unary(cast(UnaryBehavior, streamer), method, incoming, streaming=streaming)
            return make(wrapped, **serializers)
        return handler

    def _unary(self, behavior: UnaryBehavior, method: str, incoming: object, *, streaming: bool) -> UnaryBehavior:
        async def call(request: Any, context: Context) -> Any:
            observed = _Call(self._recorder, method, incoming, context)
            try:
                response = await behavior(request, context)
            except asyncio.CancelledError:
                observed.end(grpc.StatusCode.CANCELLED)
                raise
            except grpc.aio.AbortError:
                observed.end(_code_of(context))
                raise
            except Exception as error:
                status = self._failed(method, observed, error)
            else:
                observed.end(grpc.StatusCode.OK, response=response)
                return response
            if streaming:
                await self._linger.drain(request)
            await observed.abort(context, status)
            return None  # unreachable: abort raises

        return call

    def _stream(self, behavior: StreamBehavior, method: str, incoming: object, *, streaming: bool) -> StreamBehavior:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            observed = _Call(self._recorder, method, incoming, context)
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                observed.end(grpc.StatusCode.CANCELLED)
                raise
            except grpc.aio.AbortError:
                observed.end(_code_of(context))
                raise
            except Exception as error:
                status = self._failed(method, observed, error)
            else:
                observed.end(grpc.StatusCode.OK)
                return
            if streaming:
                # A live client sends audio until it is told to stop: a short linger is enough for the writes in
                # flight, and the refusal still reaches it at once.
                await self._linger.drain(request, most_seconds=_BIDIRECTIONAL_LINGER_SECONDS)
            await observed.abort(context, status)

        return call

    @staticmethod
    def _failed(method: str, observed: _Call, error: Exception) -> grpc.Status:
        if not isinstance(error, TranscribeError):
            log.error("%s failed unexpectedly", method, exc_info=error)
        return observed.status_of(error)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with `authorization: Bearer <token>` naming a configured token."""

    def __init__(self, check: TokenCheck) -> None:
        self._check = check

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS:
            return handler
        header = dict(details.invocation_metadata or ()).get("authorization")
        try:
            self._check.require(header if isinstance(header, str) else None)
        except TranscribeError as error:
            return _refusing(handler, error)
        return handler


def _refusing(handler: Handler, error: TranscribeError) -> Handler:
    """A handler of the same shape that raises the error; the call interceptor around it maps and logs it."""

    async def refuse(request: Any, context: Context) -> Any:
        raise error

    async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        raise error
        yield  # an async generator, as streaming handlers are

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **serializers)


def _code_of(context: Context) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    by_value = {status.value[0]: status for status in grpc.StatusCode}
    return by_value.get(code, grpc.StatusCode.UNKNOWN) if isinstance(code, int) else grpc.StatusCode.UNKNOWN

"""Server interceptors: every unary-response RPC gets domain errors mapped to statuses in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

from service.errors import TranscribeError
from service.server.errors import internal_status, status_code, to_status

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns TranscribeError into its status with details, and anything unexpected into a bare INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _mapped(cast(Behavior, handler.unary_unary), method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _mapped(cast(Behavior, handler.stream_unary), method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _mapped(behavior: Behavior, method: str) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except TranscribeError as error:
            log.info("%s failed: %s %s", method, status_code(error).name, error.reason)
            status = to_status(error)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            log.exception("%s failed unexpectedly", method)
            status = internal_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
        return None  # unreachable: abort raises

    return call

"""Bearer-token authentication for every RPC except health checking."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import grpc

from service.errors import Unauthenticated
from service.server.errors import to_status

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# Orchestrator probes must work without credentials.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with `authorization: Bearer <token>` naming a configured token."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(token.encode()).digest() for token in tokens]
        if not self._digests:
            raise ValueError("at least one token is required")

    def accepts(self, header: str | None) -> bool:
        """Whether the header carries a valid token; compares against every token in constant time."""
        scheme, _, token = (header or "").partition(" ")
        given = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return scheme.lower() == "bearer" and bool(token.strip()) and matched

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in OPEN_METHODS:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization")
        if self.accepts(header if isinstance(header, str) else None):
            return handler
        log.info("refused %s: %s credentials", handler_call_details.method, "invalid" if header else "missing")
        return _refusing(handler, "missing" if header is None else "invalid")


def _refusing(handler: Handler, problem: str) -> Handler:
    error = Unauthenticated(
        f"{problem} credentials: send the header 'authorization: Bearer <token>'",
        metadata={"problem": problem},
    )
    status = to_status(error)

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # The call interceptor wraps this handler: it maps the error, logs the call and lingers on a stream.
        raise error

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(status.code, status.details, status.trailing_metadata)
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

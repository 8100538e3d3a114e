"""Every HTTP call gets a request id in and out; API calls also get a log line and metrics; a crash is a bare 500."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.calls.context import REQUEST_ID_HEADER, begin_call
from service.calls.log import CallOutcome, CallRecorder
from service.domain import Transcript
from service.faces.http.errors import INTERNAL_CLOSE_CODE, internal_response

log = logging.getLogger("service.calls")

API_PREFIX = "/v1/"
CLIENT_CLOSED = 499
"""The status logged for a call whose client went away before its answer (nginx's convention; never sent)."""


def note_outcome(
    scope: Scope,
    *,
    reason: str = "",
    transcript: Transcript | None = None,
    status: int | None = None,
    backend: str = "",
    model: str = "",
) -> None:
    """Tell the call log how a call ended: the error reason, or what it transcribed; for a WebSocket, its status
    (the HTTP status of its error, 200 when it ended cleanly) and the backend and model that served it."""
    state: dict[str, Any] = scope.setdefault("state", {})
    if reason:
        state["call_reason"] = reason
    if transcript is not None:
        state["call_transcript"] = transcript
    if status is not None:
        state["call_status"] = status
    if backend:
        state["call_backend"], state["call_model"] = backend, model


class CallMiddleware:
    """The HTTP face's counterpart of the gRPC call interceptor, as plain ASGI middleware (WebSockets too)."""

    def __init__(self, app: ASGIApp, recorder: CallRecorder) -> None:
        self._app = app
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        rid = begin_call(Headers(scope=scope).get(REQUEST_ID_HEADER))
        observed = scope["path"].startswith(API_PREFIX)
        started = time.perf_counter()
        status = 0
        method = ""

        def begin() -> None:
            # Named once routing has run (the app's first receive or send), by the route's template.
            nonlocal method
            if observed and not method:
                route = scope.get("route")
                verb = "WEBSOCKET" if websocket else scope["method"]
                method = f"{verb} {getattr(route, 'path', API_PREFIX + '*')}"
                self._recorder.started(method)

        async def receive_observed() -> Message:
            begin()
            return await receive()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            begin()
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            elif message["type"] == "websocket.accept":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())],
                }
            await send(message)

        try:
            await self._app(scope, receive_observed, send_with_id)
        except Exception:
            log.exception("%s failed unexpectedly", method or scope["path"])
            scope.setdefault("state", {})["call_reason"] = "INTERNAL"
            if status == 0 and not websocket:
                await internal_response()(scope, receive, send_with_id)
            else:
                status = 500
            if websocket:
                with contextlib.suppress(Exception):  # the connection may be gone or closed already
                    await send({"type": "websocket.close", "code": INTERNAL_CLOSE_CODE})
        finally:
            if websocket:
                # A WebSocket's route notes its status; none means the client went away first.
                status = status or scope.get("state", {}).get("call_status", 0)
            if observed:
                begin()
                self._finish(method, scope, status or CLIENT_CLOSED, time.perf_counter() - started)

    def _finish(self, method: str, scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state", {})
        transcript: Transcript | None = state.get("call_transcript")
        self._recorder.finished(
            CallOutcome(
                method=method,
                code=str(status),
                seconds=seconds,
                reason=state.get("call_reason", ""),
                audio_seconds=transcript.duration if transcript is not None else None,
                backend=transcript.backend.value if transcript is not None else state.get("call_backend", ""),
                model=transcript.model if transcript is not None else state.get("call_model", ""),
            )
        )

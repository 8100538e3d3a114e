"""Live captions over a WebSocket: a JSON config, then audio frames in; results and voice events out as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.types import Message

from service.calls.auth import TokenCheck
from service.calls.context import request_id
from service.core.live import LiveSession, LiveTranscriber
from service.core.transcriber import Transcriber
from service.errors import (
    BackendNotReady,
    InvalidConfig,
    StreamIdle,
    StreamOutOfOrder,
    TranscribeError,
    Unauthenticated,
)
from service.faces.http.calls import note_outcome
from service.faces.http.convert import live_event_message, live_options
from service.faces.http.errors import INTERNAL_CLOSE_CODE, INTERNAL_MESSAGE, close_code, domain_error_body, error_body

log = logging.getLogger("service")

T = TypeVar("T")

LIVE_PATH = "/v1/audio/live"
SUBPROTOCOL = "transcribe-live"
"""The subprotocol the server answers with when a client offers it (browsers offer it beside the token)."""
BEARER_SUBPROTOCOL_PREFIX = "bearer."
"""A client offers `bearer.<token>` as a subprotocol to authenticate where it cannot set headers (browsers)."""
MAX_CONFIG_CHARS = 64 * 1024
"""The longest first message (a 4000-character prompt takes at most 24 KB as JSON)."""
NORMAL_CLOSURE = 1000
SERVICE_RESTART = 1012
"""RFC 6455's close code for a server restarting: a drained session's finals were sent; reconnect elsewhere."""
_AUDIO_OR_END = 'after the config, send audio as binary messages and {"type": "end"} as text, and nothing after end'


class ClientClosed(TranscribeError):
    """The client closed the WebSocket, or lost it, before the session ended (nothing more can be sent)."""

    reason = "CLIENT_CLOSED"


class _Draining(Exception):
    """The server began draining before the session started."""


class LiveConnections:
    """The live sessions the HTTP face serves; on shutdown each stops taking audio, sends its last finals and closes."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self._open: set[asyncio.Event] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count one connection for as long as the block runs."""
        done = asyncio.Event()
        self._open.add(done)
        try:
            yield
        finally:
            done.set()
            self._open.discard(done)

    async def drain(self, seconds: float) -> None:
        """Ask every session to flush and close, and wait for them for at most `seconds`."""
        self.draining.set()
        waiting = [asyncio.ensure_future(done.wait()) for done in self._open]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=seconds)
            for task in pending:
                task.cancel()


def live_router(
    live: LiveTranscriber,
    transcriber: Transcriber,
    tokens: TokenCheck | None,
    idle_seconds: float,
    connections: LiveConnections,
) -> APIRouter:
    """`/v1/audio/live`: live captions over a WebSocket, behind the bearer tokens when the server has any."""
    router = APIRouter()

    @router.websocket(LIVE_PATH)
    async def live_captions(websocket: WebSocket) -> None:
        offered: list[str] = list(websocket.scope.get("subprotocols", []))
        chosen = SUBPROTOCOL if SUBPROTOCOL in offered else (offered[0] if offered else None)
        await websocket.accept(subprotocol=chosen)
        with connections.track():
            call = _LiveCall(websocket, live, transcriber, idle_seconds, connections)
            await call.run(tokens)

    return router


def credentials(websocket: WebSocket) -> str | None:
    """The `authorization` header a WebSocket carries: its own, else one made of a `bearer.` subprotocol or of the
    `token` query parameter."""
    header = websocket.headers.get("authorization")
    if header is not None:
        return header
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return f"Bearer {offered.removeprefix(BEARER_SUBPROTOCOL_PREFIX)}"
    token = websocket.query_params.get("token")
    return f"Bearer {token}" if token is not None else None


def _authorize(tokens: TokenCheck, header: str | None) -> None:
    """Raise Unauthenticated, naming the three ways a WebSocket can carry a token, unless the header is valid."""
    if tokens.accepts(header):
        return
    problem = "missing" if header is None else "invalid"
    raise Unauthenticated(
        f"{problem} credentials: send the header 'authorization: Bearer <token>', offer the subprotocol "
        f"'{BEARER_SUBPROTOCOL_PREFIX}<token>', or add '?token=<token>' to the URL",
        metadata={"problem": problem},
    )


class _LiveCall:
    """One live captions connection: converts its messages to a live session's input and its events to messages."""

    def __init__(
        self,
        websocket: WebSocket,
        live: LiveTranscriber,
        transcriber: Transcriber,
        idle_seconds: float,
        connections: LiveConnections,
    ) -> None:
        self._ws = websocket
        self._live = live
        self._transcriber = transcriber
        self._idle_seconds = idle_seconds
        self._connections = connections
        self._ended = False
        self._client_ended = False

    async def run(self, tokens: TokenCheck | None) -> None:
        scope = self._ws.scope
        try:
            if tokens is not None:
                _authorize(tokens, credentials(self._ws))
            first = await self._unless_draining(self._receive())
            options = live_options(_config_of(first), self._transcriber.models())
            async with self._live.session(options) as session:
                note_outcome(scope, backend=session.backend.kind.value, model=session.model)
                await self._ws.send_json(
                    {
                        "type": "session",
                        "request_id": request_id.get(),
                        "backend": session.backend.kind.value,
                        "model": session.model,
                    }
                )
                await self._relay(session)
            await self._ws.send_json({"type": "done"})
            # A session that ended before the client's end was ended by the server draining (this face or the core).
            await self._ws.close(NORMAL_CLOSURE if self._client_ended else SERVICE_RESTART)
            note_outcome(scope, status=200)
        except (ClientClosed, WebSocketDisconnect):
            note_outcome(scope, reason=ClientClosed.reason)
        except _Draining:
            await self._refuse(BackendNotReady("the server is shutting down; connect again to start a session"))
        except TranscribeError as error:
            await self._refuse(error)
        except Exception:
            log.exception("%s failed unexpectedly", LIVE_PATH)
            note_outcome(scope, reason="INTERNAL", status=500)
            with contextlib.suppress(Exception):  # the connection may be gone
                await self._ws.send_json({"type": "error", **error_body(500, INTERNAL_MESSAGE, code="internal")})
                await self._ws.close(INTERNAL_CLOSE_CODE)

    async def _relay(self, session: LiveSession) -> None:
        """Feed the client's audio to the session while its events go back to the client."""
        loop = asyncio.get_running_loop()
        feeding = loop.create_task(self._feed(session))
        draining = loop.create_task(self._drain(session, feeding))
        try:
            async for event in session.events():
                await self._ws.send_json(live_event_message(event))
        finally:
            for task in (feeding, draining):
                task.cancel()
            await asyncio.gather(feeding, draining, return_exceptions=True)

    async def _feed(self, session: LiveSession) -> None:
        try:
            while True:
                message = await self._receive(idle=not self._ended)
                if message.get("bytes") is not None and not self._ended:
                    session.feed(message["bytes"])
                elif message.get("text") is not None and _is_end(message["text"]) and not self._ended:
                    self._ended = self._client_ended = True
                    await session.finish()
                else:
                    raise StreamOutOfOrder(_AUDIO_OR_END)
        except ClientClosed as error:
            session.fail(error)
        except TranscribeError as error:
            session.end_with(error)

    async def _drain(self, session: LiveSession, feeding: asyncio.Task[None]) -> None:
        """When the server drains, stop taking audio: what was heard is flushed as finals, then the session ends."""
        await self._connections.draining.wait()
        if not self._ended:
            self._ended = True
            feeding.cancel()
            await session.finish()

    async def _receive(self, *, idle: bool = True) -> Message:
        """The client's next message; raises StreamIdle after the idle timeout (when `idle`), ClientClosed when the
        client has gone."""
        try:
            async with asyncio.timeout(self._idle_seconds if idle else None):
                message = await self._ws.receive()
        except TimeoutError:
            raise StreamIdle(
                f"the client sent nothing for {self._idle_seconds:g} seconds",
                metadata={"idle_timeout_seconds": f"{self._idle_seconds:g}"},
            ) from None
        if message["type"] == "websocket.disconnect":
            raise ClientClosed("the client closed the connection")
        return message

    async def _unless_draining(self, awaitable: Awaitable[T]) -> T:
        """Await; raises _Draining when the server begins draining first."""
        work = asyncio.ensure_future(awaitable)
        watcher = asyncio.ensure_future(self._connections.draining.wait())
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, TranscribeError):
                    await work
        if work.cancelled():
            raise _Draining
        return work.result()

    async def _refuse(self, error: TranscribeError) -> None:
        """Send the error as OpenAI's body in a message of type `error`, then close with 4000 + its HTTP status."""
        status, body = domain_error_body(error, audio_param=None)
        note_outcome(self._ws.scope, reason=error.reason, status=status)
        message: dict[str, Any] = {"type": "error", **body}
        if error.retry_after_seconds is not None:
            message["retry_after_seconds"] = error.retry_after_seconds
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client may have gone meanwhile
            await self._ws.send_json(message)
            await self._ws.close(close_code(status), reason=error.reason.lower())


def _config_of(message: Message) -> object:
    """The JSON value of the first message, which must be the config, as text."""
    text = message.get("text")
    if text is None:
        raise StreamOutOfOrder('the first message must be the live config, as JSON text: {"audio_format": ...}')
    if len(text) > MAX_CONFIG_CHARS:
        raise InvalidConfig(f"the live config may be at most {MAX_CONFIG_CHARS} characters long")
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidConfig("the live config is not valid JSON") from None


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"

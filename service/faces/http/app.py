"""Builds the FastAPI app of the HTTP face and serves it with uvicorn in the running event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import ssl
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from service.calls.auth import TokenCheck
from service.calls.log import CallRecorder
from service.core.live import LiveTranscriber
from service.core.transcriber import Transcriber
from service.errors import TranscribeError
from service.faces.http.calls import CallMiddleware, note_outcome
from service.faces.http.errors import error_body, error_response
from service.faces.http.live import LIVE_PATH, LiveConnections, live_router
from service.faces.http.routes import Readiness, api_router, page_router, probe_router
from service.settings import Settings

log = logging.getLogger("service")

DESCRIPTION = f"""OpenAI's audio API (`/v1/audio/transcriptions`, `/v1/audio/translations`, `/v1/models`) over the
same core as the gRPC `transcribe.v1.TranscribeService`: point the `openai` SDK's `base_url` at `/v1`.

Live captions: a WebSocket at `{LIVE_PATH}` (not listed below, as OpenAPI has no WebSockets); see the README."""


def create_server_for(app: FastAPI, settings: Settings) -> HttpServer:
    """The HTTP server the settings describe: address, port, grace period and TLS files."""
    return HttpServer(
        app,
        settings.http_host,
        settings.http_port,
        settings.grace_period_seconds,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        client_ca_file=settings.tls_client_ca_file,
    )


def create_app(
    settings: Settings,
    transcriber: Transcriber,
    live: LiveTranscriber,
    recorder: CallRecorder,
    readiness: Readiness,
) -> FastAPI:
    """The HTTP face: OpenAI routes, live captions, probes, the page and OpenAPI docs at /docs; every error in
    OpenAI's shape."""
    app = FastAPI(title="transcribe", description=DESCRIPTION, version="1")
    tokens = settings.bearer_tokens()
    check = TokenCheck(tokens) if tokens else None
    idle_seconds = settings.stream_idle_timeout_seconds
    app.include_router(api_router(transcriber, check, idle_seconds))
    app.state.live_connections = LiveConnections()
    app.include_router(live_router(live, transcriber, check, idle_seconds, app.state.live_connections))
    app.include_router(probe_router(readiness))
    app.include_router(page_router())
    app.add_exception_handler(TranscribeError, _domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(CallMiddleware, recorder=recorder)
    return app


async def _domain_error(request: Request, error: Exception) -> Response:
    if not isinstance(error, TranscribeError):  # pragma: no cover (registered for TranscribeError only)
        raise error
    note_outcome(request.scope, reason=error.reason)
    return error_response(error)


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    detail = str(error.detail) if isinstance(error, HTTPException) else ""
    headers = error.headers if isinstance(error, HTTPException) else None
    return JSONResponse(error_body(status, detail), status_code=status, headers=headers)


async def _invalid_request(request: Request, error: Exception) -> Response:
    return JSONResponse(error_body(400, "the request is invalid"), status_code=400)


class QuietWebSocketLog(logging.Filter):
    """On uvicorn's logger: drops its lines for each WebSocket (the call log has one per call, as for HTTP, whose
    access log is off) and the websockets library's debug lines (every frame, and every handshake header with its
    credentials), and masks `token` query parameters in whatever else it logs, so no live token is logged."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")
    _PER_CONNECTION = ('"WebSocket %s"', "connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.levelno <= logging.DEBUG and f"{os.sep}websockets{os.sep}" in record.pathname:
            return False
        if record.levelno <= logging.INFO and any(part in message for part in self._PER_CONNECTION):
            return False
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1(masked)", message)
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1(masked)", a) if isinstance(a, str) else a for a in record.args)
        return True


def quiet_websocket_log() -> None:
    """Put QuietWebSocketLog on uvicorn's logger, once."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietWebSocketLog) for f in logger.filters):
        logger.addFilter(QuietWebSocketLog())


class HttpServer:
    """uvicorn serving the HTTP face on the running event loop, beside the gRPC server; drained like it.

    With a certificate and key it speaks HTTPS only, and with a client CA it requires client certificates (mutual
    TLS), as the gRPC server does with the same files.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        grace_seconds: float,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_ca_file: Path | None = None,
    ) -> None:
        self._app = app
        self._grace_seconds = grace_seconds
        quiet_websocket_log()
        self._config = uvicorn.Config(
            app,
            http="h11",
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # audio does not compress: inflating every frame would only cost CPU
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(grace_seconds),
            ssl_certfile=cert_file,
            ssl_keyfile=key_file,
            ssl_ca_certs=str(client_ca_file) if client_ca_file is not None else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if client_ca_file is not None else ssl.CERT_NONE,
        )
        self.scheme = "https" if cert_file is not None else "http"
        self._host = host.strip("[]")
        self._port = port
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._ticking: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and serve; returns the port (useful with port 0)."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections
        # accepted from a socket whose proto says TCP (uvicorn binding its own socket gets this). With Nagle on, a
        # response's body written after its headers can wait for the client's delayed ACK, about 40 ms on Linux.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self._config.load()
        server = uvicorn.Server(self._config)
        server.lifespan = self._config.lifespan_class(self._config)
        await server.startup(sockets=[sock])
        self._server, self._socket = server, sock
        self._ticking = asyncio.create_task(server.main_loop())
        port: int = sock.getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop accepting, let calls in flight finish within the grace period, then cancel what is left.

        Live sessions stop taking audio first and send their last finals before their WebSockets close (uvicorn
        would close them at once).
        """
        if self._server is None:
            return
        started = time.monotonic()
        connections = getattr(self._app.state, "live_connections", None)
        if isinstance(connections, LiveConnections):
            await connections.drain(self._grace_seconds)
        left = self._grace_seconds - (time.monotonic() - started)
        self._server.config.timeout_graceful_shutdown = max(0, math.ceil(left))
        self._server.should_exit = True
        if self._ticking is not None:
            await self._ticking
        await self._server.shutdown(sockets=[self._socket] if self._socket is not None else None)
        self._server = None

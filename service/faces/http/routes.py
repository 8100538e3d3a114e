"""The HTTP face's routes: OpenAI's audio and model routes, probes and the page; each converts and awaits the core."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect

from service.calls.auth import TokenCheck
from service.core.transcriber import IdleLimited, Transcriber
from service.domain import Segment, Task, Transcript, TranscriptionOptions
from service.errors import FieldViolation, InvalidConfig, ModelNotFound, TranscribeError
from service.faces.http.calls import CLIENT_CLOSED, note_outcome
from service.faces.http.convert import (
    GRANULARITIES,
    RESPONSE_FORMATS,
    AudioRequest,
    audio_request,
    delta_event,
    done_event,
    error_event,
    model_objects,
    stream_events,
    transcript_response,
)
from service.faces.http.errors import domain_error_body
from service.faces.http.form import FILE_FIELD, MultipartForm

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="One of the server's tokens, when it has any.")


class Readiness:
    """Whether the backends are loaded and the server is not draining; `/readyz` reports it."""

    def __init__(self) -> None:
        self.ready = False


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class _LateOptions:
    """The options of a form whose fields may follow its file: read once the core has the whole upload."""

    def __init__(self, form: MultipartForm, task: Task, transcriber: Transcriber) -> None:
        self._form = form
        self._task = task
        self._transcriber = transcriber
        self.request: AudioRequest | None = None

    def __call__(self) -> TranscriptionOptions:
        self.request = audio_request(self._form.fields, self._task, self._transcriber.models())
        return self.request.options


def _form_schema(task: Task) -> dict[str, Any]:
    """The multipart body of an audio route for the OpenAPI docs (the route reads the stream itself)."""
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "The audio, in any format FFmpeg decodes."},
        "model": {"type": "string", "default": "whisper-1", "description": "See GET /v1/models."},
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    }
    if task is Task.TRANSCRIBE:
        properties["language"] = {"type": "string", "description": "BCP-47 tag; empty detects the language."}
        properties["timestamp_granularities[]"] = {"type": "array", "items": {"enum": list(GRANULARITIES)}}
        properties["stream"] = {"type": "boolean", "default": False, "description": "Answer as server-sent events."}
    schema = {"type": "object", "required": [FILE_FIELD], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def api_router(transcriber: Transcriber, tokens: TokenCheck | None, idle_seconds: float) -> APIRouter:
    """OpenAI's `/v1` audio and model routes, behind the bearer tokens when the server has any."""

    def authorize(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> None:
        if tokens is not None:
            tokens.require(request.headers.get("authorization"))

    router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
    created = int(time.time())

    async def audio(request: Request, task: Task) -> Response:
        stream = IdleLimited(aiter(request.stream()), idle_seconds)
        form = MultipartForm(stream, request.headers.get("content-type"))
        try:
            if not await form.until_file():
                raise InvalidConfig("the form has no file", violations=[FieldViolation(FILE_FIELD, "is required")])
            # Fields before the file are checked before it is read: each field's own value, and the model and
            # what goes with it once the model is known (fields after the file can only add constraints then).
            early = audio_request(form.fields, task, transcriber.models())
            if "model" in form.fields:
                transcriber.check(early.options)
            late = _LateOptions(form, task, transcriber)
            finished = _FinishedSegments()
            work = asyncio.ensure_future(transcriber.transcribe(late, form.file(), segments=finished))
            try:
                await _until_disconnected(request, form.ended, finished.streamable(work, lambda: late.request or early))
            except BaseException:
                await _cancelled(work)
                raise
            if not work.done():  # a stream whose first segments are done: its deltas go out as the rest is worked on
                return StreamingResponse(_deltas(request, work, finished), media_type="text/event-stream")
            transcript = work.result()
        except (ClientDisconnect, _ClientGone):
            return Response(status_code=CLIENT_CLOSED)
        note_outcome(request.scope, transcript=transcript)
        answer = late.request or early
        if answer.stream:
            return StreamingResponse(stream_events(transcript), media_type="text/event-stream")
        return transcript_response(transcript, answer)

    @router.post(
        "/audio/transcriptions",
        summary="Transcribe audio (OpenAI-compatible)",
        openapi_extra=_form_schema(Task.TRANSCRIBE),
        response_model=None,
    )
    async def transcriptions(request: Request) -> Response:
        """Transcribe the uploaded audio in its own language."""
        return await audio(request, Task.TRANSCRIBE)

    @router.post(
        "/audio/translations",
        summary="Translate audio to English (OpenAI-compatible)",
        openapi_extra=_form_schema(Task.TRANSLATE),
        response_model=None,
    )
    async def translations(request: Request) -> Response:
        """Translate the uploaded audio's speech to English text."""
        return await audio(request, Task.TRANSLATE)

    @router.get("/models", summary="The models this server serves")
    async def list_models() -> dict[str, Any]:
        """`whisper-1` (the server's default backend and model), then every model each backend lists."""
        return {"object": "list", "data": model_objects(transcriber.models(), created)}

    @router.get("/models/{model:path}", summary="One model")
    async def retrieve_model(model: str) -> dict[str, Any]:
        """The model object of a listed model; 404 for any other name."""
        for entry in model_objects(transcriber.models(), created):
            if entry["id"] == model:
                return entry
        raise ModelNotFound(f"model {model!r} is not served here; GET /v1/models lists what is")

    return router


class _FinishedSegments:
    """The segments the core reports as it finishes them, kept for a stream's deltas."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._arrived = asyncio.Event()

    def __call__(self, segments: Sequence[Segment]) -> None:
        self.segments.extend(segments)
        self._arrived.set()

    async def arrival_or(self, work: asyncio.Future[Transcript]) -> None:
        """Wait until more segments arrive or the work is done."""
        arrived: asyncio.Future[Any] = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({arrived, work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        self._arrived.clear()

    async def streamable(self, work: asyncio.Future[Transcript], answer: Callable[[], AudioRequest]) -> None:
        """Return once the work is done, or once it is a stream (known with its options) and a segment is done."""
        while not work.done():
            if answer().stream and self.segments:
                return
            await self.arrival_or(work)


async def _deltas(
    request: Request, work: asyncio.Future[Transcript], finished: _FinishedSegments
) -> AsyncIterator[str]:
    """A delta per segment as the core finishes it, then any the transcript adds, then the done event.

    A failure after the first delta (its status is sent by then) becomes an `error` event; a client that goes away
    cancels the work.
    """
    taken = deltas = 0

    def new_deltas(segments: Sequence[Segment]) -> Iterator[str]:
        nonlocal deltas
        for segment in segments:
            if text := segment.text.strip():
                yield delta_event(text, first=deltas == 0)
                deltas += 1

    try:
        while True:
            done = work.done()  # every segment reported before the work ended is in the list by then
            for event in new_deltas(finished.segments[taken:]):
                yield event
            taken = len(finished.segments)
            if done:
                break
            await finished.arrival_or(work)
        transcript = work.result()
        note_outcome(request.scope, transcript=transcript)
        for event in new_deltas(transcript.segments[taken:]):  # segments a backend did not report (none, locally)
            yield event
        yield done_event(transcript)
    except TranscribeError as error:
        note_outcome(request.scope, reason=error.reason)
        yield error_event(domain_error_body(error)[1])
    finally:
        await _cancelled(work)


async def _cancelled(work: asyncio.Future[Any]) -> None:
    """Cancel the work unless it is done, and wait for it to end (whatever it ends with)."""
    if not work.done():
        work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work


async def _until_disconnected(request: Request, body_read: asyncio.Event, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; once the whole body is read, a client that disconnects cancels it (raising _ClientGone)."""
    task = asyncio.ensure_future(work)

    async def client_left() -> None:
        await body_read.wait()
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise _ClientGone
    return task.result()


def probe_router(readiness: Readiness) -> APIRouter:
    """`/healthz` (the process answers) and `/readyz` (the backends are loaded and it is not draining)."""
    router = APIRouter(tags=["probes"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """Always ok while the process serves HTTP."""
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness", response_model=None)
    async def readyz() -> JSONResponse:
        """200 once the backends are loaded; 503 while they load and while the server drains."""
        if readiness.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    return router


def page_router() -> APIRouter:
    """`GET /`: the page that records or picks a file and shows its transcript."""
    page = resources.files("service.faces.http").joinpath("page.html").read_text(encoding="utf-8")
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return router

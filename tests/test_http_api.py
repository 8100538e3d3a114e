"""The OpenAI-compatible HTTP face, driven by the official `openai` SDK unchanged and by raw multipart requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from service import errors
from service.__main__ import serve
from service.backends.local import LocalBackend
from service.backends.openai_api import OpenAIBackend
from service.domain import AudioFile, BackendKind, Progress, Transcript, TranscriptionOptions
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine
from service.faces.http.errors import STATUSES
from service.logs import RequestIdFilter
from service.settings import Settings
from service.wiring import build_app
from tests.certs import make_pki
from tests.conftest import DATA, MODEL_CACHE, REPO, Fixture, RunningServer, StartServer
from tests.helpers import assert_has_words
from tests.processes import free_port
from tests.test_lifecycle import GatedBackend
from transcribe.v1 import transcribe_service_pb2 as pb

SPEECH = DATA / "speech_en.wav"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
BOUNDARY = "test-boundary-7f3a"


def sdk(server: RunningServer, api_key: str = "unused") -> openai.AsyncOpenAI:
    """The official async client pointed at the server's HTTP face, without retries."""
    return openai.AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key=api_key, max_retries=0, timeout=120)


def multipart(*parts: tuple[str, bytes | str], filename: str = "audio.wav") -> bytes:
    """A multipart/form-data body with the parts in the order given (`file` gets a file name)."""
    body = b""
    for name, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if name == "file" else "")
        data = value.encode() if isinstance(value, str) else value
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


async def post_form(server: RunningServer, body: bytes, **headers: str) -> httpx.Response:
    """POST a prepared multipart body to the transcriptions route."""
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=120) as client:
        return await client.post(TRANSCRIPTIONS, content=body, headers=content_type | headers)


@contextlib.asynccontextmanager
async def unfinished_upload(
    server: RunningServer, sent: bytes, declared: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw connection that declares `declared` body bytes, sends `sent` of them, and waits."""
    host, port = server.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    )
    writer.write(head.encode() + sent)
    await writer.drain()
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def file_part_head(filename: str = "big.wav") -> bytes:
    """The start of a form whose `model` field comes first, up to the first byte of its file."""
    return multipart(("model", "whisper-1"))[: -len(f"--{BOUNDARY}--\r\n")] + (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode()
    )


async def settled(server: RunningServer) -> None:
    """Wait until the server holds no upload file (a refused or abandoned upload is deleted as its call ends)."""
    for _ in range(100):
        if not server.store.files():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"upload files left behind: {server.store.files()}")


async def test_every_response_format(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """json, text, srt, vtt and verbose_json each come back in OpenAI's shape with the spoken words."""
    server = await start_server(http_port=0)
    client = sdk(server)
    fixture = spoken["speech_en.wav"]
    as_json = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1")
    assert_has_words(as_json.text, fixture.expected_words)
    assert as_json.usage is not None
    assert as_json.usage.type == "duration"
    assert as_json.usage.seconds == math.ceil(fixture.duration)
    text = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1", response_format="text")
    assert text.endswith("\n")
    assert text.strip() == as_json.text
    srt = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1", response_format="srt")
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt), srt
    assert_has_words(srt, fixture.expected_words)
    vtt = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1", response_format="vtt")
    assert re.match(r"WEBVTT\n\n00:00:\d\d\.\d{3} --> 00:00:\d\d\.\d{3}\n\S", vtt), vtt
    verbose = await client.audio.transcriptions.create(file=SPEECH, model="tiny.en", response_format="verbose_json")
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(fixture.duration, abs=0.05)
    assert verbose.segments
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    assert all(0 <= s.start <= s.end <= fixture.duration + 0.5 for s in verbose.segments)
    assert " ".join(s.text.strip() for s in verbose.segments) == verbose.text
    assert verbose.words is None
    assert verbose.usage is not None
    assert verbose.usage.seconds == math.ceil(fixture.duration)


async def test_word_and_segment_granularities(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """timestamp_granularities[] word adds timed words; segment alone gives segments only; word alone, words only."""
    server = await start_server(http_port=0)
    client = sdk(server)
    both = await client.audio.transcriptions.create(
        file=SPEECH, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert both.segments
    assert both.words
    assert_has_words(" ".join(w.word for w in both.words), spoken["speech_en.wav"].expected_words)
    assert all(w.start <= w.end for w in both.words)
    assert [w.start for w in both.words] == sorted(w.start for w in both.words)
    words = await client.audio.transcriptions.create(
        file=SPEECH, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert words.words
    assert words.segments is None
    segments = await client.audio.transcriptions.create(
        file=SPEECH, model="whisper-1", response_format="verbose_json", timestamp_granularities=["segment"]
    )
    assert segments.segments
    assert segments.words is None


async def test_stream_sends_a_delta_per_segment_then_done(start_server: StartServer) -> None:
    """stream=True answers with server-sent transcript.text.delta events, one per segment, then transcript.text.done."""
    server = await start_server(http_port=0)
    client = sdk(server)
    verbose = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1", response_format="verbose_json")
    stream = await client.audio.transcriptions.create(file=SPEECH, model="whisper-1", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == ["transcript.text.delta"] * len(verbose.segments or []) + [
        "transcript.text.done"
    ]
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert events[-1].type == "transcript.text.done"
    assert deltas == events[-1].text == verbose.text


async def test_stream_deltas_go_out_while_the_rest_is_still_transcribed(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """With stream=true, the first delta of a recording transcribed in windows arrives before its last batch is done,
    and the deltas add up to the done event's text."""
    backend = LocalBackend(
        engine=FasterWhisperEngine(cache_dir=MODEL_CACHE, cpu_threads=1, num_workers=1),
        specs=local_model_specs("tiny.en", MODEL_CACHE),
        default_model="tiny.en",
        workers=1,  # one batch after another: the first is done well before the last
        batch_size=2,
        windowed_min_seconds=0,
    )
    await backend.start()
    try:
        server = await start_server({BackendKind.LOCAL: backend}, http_port=0)
        gate = server.transcriber.gates[BackendKind.LOCAL]
        events: list[dict[str, Any]] = []
        working_at_first_delta = None
        form = {"model": "whisper-1", "stream": "true"}
        audio = {"file": ("speech.ogg", spoken["speech_en_60s.ogg"].path.read_bytes(), "audio/ogg")}
        async with (
            httpx.AsyncClient(base_url=server.http_url, timeout=120) as client,
            client.stream("POST", TRANSCRIPTIONS, data=form, files=audio) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
                    if working_at_first_delta is None and events[-1]["type"] == "transcript.text.delta":
                        working_at_first_delta = gate.in_flight
    finally:
        await backend.aclose()
    assert working_at_first_delta == 1, "the first delta came only once the transcription was done"
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert len(events) > 3
    assert events[-1]["type"] == "transcript.text.done"
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]
    assert_has_words(events[-1]["text"], spoken["speech_en_60s.ogg"].expected_words)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations deprecated
async def test_translation_turns_french_into_english(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """translations.create with the multilingual base model answers in English, in json and verbose_json."""
    server = await start_server(http_port=0)
    client = sdk(server)
    fixture = spoken["speech_fr.wav"]
    translation = await client.audio.translations.create(file=fixture.path, model="base")
    assert_has_words(translation.text, fixture.translated_words)
    assert "famille" not in translation.text.lower()
    verbose = await client.audio.translations.create(file=fixture.path, model="base", response_format="verbose_json")
    assert verbose.segments
    assert verbose.duration == pytest.approx(fixture.duration, abs=0.05)


async def test_models_are_listed_and_retrieved(start_server: StartServer) -> None:
    """models.list names whisper-1 and every local model; retrieve finds one and 404s an unknown name."""
    server = await start_server(http_port=0)
    client = sdk(server)
    listed = {model.id: model.owned_by async for model in client.models.list()}
    assert listed == {"whisper-1": "transcribe", "tiny.en": "local", "base": "local"}
    assert (await client.models.retrieve("tiny.en")).id == "tiny.en"
    with pytest.raises(openai.NotFoundError) as refused:
        await client.models.retrieve("gpt-99")
    assert refused.value.code == "model_not_found"


async def test_fields_may_follow_the_file(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """A form with the file first and its fields after it (as curl -F file=@... -F model=... sends) is honoured."""
    server = await start_server(http_port=0)
    body = multipart(("file", SPEECH.read_bytes()), ("model", "tiny.en"), ("response_format", "text"))
    response = await post_form(server, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert_has_words(response.text, spoken["speech_en.wav"].expected_words)
    late_unknown = multipart(("file", SPEECH.read_bytes()), ("model", "large-v9"))
    response = await post_form(server, late_unknown)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


@dataclass(frozen=True)
class BadRequest:
    """A request the server must refuse: what differs from a good one, and the error the SDK must raise."""

    name: str
    changes: dict[str, Any]
    error: type[openai.APIStatusError]
    status: int
    code: str


BAD_REQUESTS = [
    BadRequest("empty file", {"file": ("empty.wav", b"")}, openai.BadRequestError, 400, "audio_empty"),
    BadRequest("not audio", {"file": DATA / "not_audio.txt"}, openai.BadRequestError, 400, "audio_undecodable"),
    BadRequest("image", {"file": DATA / "image.png"}, openai.BadRequestError, 400, "audio_undecodable"),
    BadRequest("truncated", {"file": DATA / "truncated.wav"}, openai.BadRequestError, 400, "audio_truncated"),
    BadRequest("unknown model", {"model": "large-v9"}, openai.NotFoundError, 404, "model_not_found"),
    BadRequest("bad format", {"response_format": "docx"}, openai.BadRequestError, 400, "invalid_config"),
    BadRequest("bad granularity", {"timestamp_granularities": ["char"]}, openai.BadRequestError, 400, "invalid_config"),
    BadRequest("bad temperature", {"temperature": 7}, openai.BadRequestError, 400, "invalid_config"),
    BadRequest("bad language", {"language": "12"}, openai.BadRequestError, 400, "invalid_config"),
    BadRequest(
        "english-only model", {"model": "tiny.en", "language": "fr"}, openai.BadRequestError, 400, "invalid_config"
    ),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case.name for case in BAD_REQUESTS])
async def test_bad_input_gets_its_status_and_an_openai_error(case: BadRequest, start_server: StartServer) -> None:
    """Each bad request raises the SDK's typed exception with its status and an OpenAI-shaped body; nothing is kept."""
    server = await start_server(http_port=0)
    client = sdk(server)
    request: dict[str, Any] = {"file": SPEECH, "model": "whisper-1"} | case.changes
    with pytest.raises(case.error) as refused:
        await client.audio.transcriptions.create(**request)
    assert refused.value.status_code == case.status
    assert refused.value.code == case.code
    body = refused.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error"
    assert body["message"]
    assert "Traceback" not in body["message"]
    assert "/" not in body["message"]
    await settled(server)
    assert (await client.audio.transcriptions.create(file=SPEECH, model="whisper-1")).text


async def test_missing_file_and_a_body_that_is_not_a_form(start_server: StartServer) -> None:
    """A form without `file` is a 400 naming it; a JSON body is a 415; both in OpenAI's shape."""
    server = await start_server(http_port=0)
    client = sdk(server)
    with pytest.raises(openai.BadRequestError) as missing:
        await client.post(
            TRANSCRIPTIONS.removeprefix("/v1"),
            cast_to=object,
            body={"model": "whisper-1"},
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert missing.value.param == "file"
    with pytest.raises(openai.APIStatusError) as not_a_form:
        await client.post(TRANSCRIPTIONS.removeprefix("/v1"), cast_to=object, body={"model": "whisper-1"})
    assert not_a_form.value.status_code == 415
    assert not_a_form.value.code == "unsupported_media_type"


async def test_too_large_is_refused_while_the_upload_streams(start_server: StartServer) -> None:
    """Past the byte limit the server answers 413 at once, before the client has sent the rest; nothing is kept."""
    server = await start_server(http_port=0, max_audio_bytes=64 * 1024)
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk(server).audio.transcriptions.create(file=SPEECH, model="whisper-1")
    assert refused.value.status_code == 413
    assert refused.value.code == "audio_too_large"
    assert refused.value.param == "file"
    head = file_part_head()
    async with unfinished_upload(server, head + bytes(256 * 1024), declared=len(head) + 64 * 1024 * 1024) as (
        reader,
        _,
    ):
        status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    await settled(server)


async def test_wrong_token_is_refused_and_the_right_one_accepted(start_server: StartServer) -> None:
    """With tokens configured, no or a wrong key is a 401 AuthenticationError; a configured key transcribes."""
    server = await start_server(http_port=0, auth_tokens="s3cret,other")
    with pytest.raises(openai.AuthenticationError) as refused:
        await sdk(server, api_key="wrong").audio.transcriptions.create(file=SPEECH, model="whisper-1")
    assert refused.value.code == "unauthenticated"
    assert refused.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        await sdk(server, api_key="wrong").models.list()
    assert (await sdk(server, api_key="s3cret").audio.transcriptions.create(file=SPEECH, model="whisper-1")).text
    async with httpx.AsyncClient(base_url=server.http_url) as probe:
        assert (await probe.get("/healthz")).status_code == 200
        assert (await probe.get("/")).status_code == 200


async def test_with_tls_files_the_http_face_speaks_mutual_tls(start_server: StartServer, tmp_path: Path) -> None:
    """With the TLS files the gRPC face uses, the HTTP face is HTTPS and asks for a client certificate from the CA."""
    pki = make_pki(tmp_path)
    server = await start_server(
        http_port=0, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca
    )
    assert server.http_url.startswith("https://")
    trusted = ssl.create_default_context(cafile=pki.ca)
    trusted.load_cert_chain(pki.client_cert, pki.client_key)
    async with openai.AsyncOpenAI(
        base_url=f"{server.http_url}/v1",
        api_key="unused",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=trusted),
    ) as client:
        assert (await client.audio.transcriptions.create(file=SPEECH, model="whisper-1")).text
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca)) as stranger:
            await stranger.get(f"{server.http_url}/healthz")


async def test_overload_is_a_429_with_retry_after(start_server: StartServer) -> None:
    """With every upload place taken, a call gets RateLimitError (429) and Retry-After; the held upload is freed."""
    server = await start_server(http_port=0, max_concurrent_uploads=1, overload_retry_after_seconds=2)
    head = file_part_head()
    async with unfinished_upload(server, head + bytes(1024), declared=len(head) + 1024 * 1024):
        for _ in range(100):
            if server.transcriber.upload_gate.in_flight:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk(server).audio.transcriptions.create(file=SPEECH, model="whisper-1")
    assert refused.value.code == "overloaded"
    assert refused.value.response.headers["retry-after"] == "2"
    await settled(server)
    assert (await sdk(server).audio.transcriptions.create(file=SPEECH, model="whisper-1")).text


async def test_a_client_gone_mid_upload_leaves_nothing(start_server: StartServer) -> None:
    """A connection closed halfway through its upload frees its place and its file; the server keeps serving."""
    server = await start_server(http_port=0)
    head = file_part_head()
    async with unfinished_upload(server, head + SPEECH.read_bytes()[:100_000], declared=len(head) + 400_000):
        await asyncio.sleep(0.3)
    await settled(server)
    for _ in range(100):
        if not server.transcriber.upload_gate.in_flight:
            break
        await asyncio.sleep(0.05)
    assert server.transcriber.upload_gate.in_flight == 0
    assert (await sdk(server).audio.transcriptions.create(file=SPEECH, model="whisper-1")).text


class HangingBackend(GatedBackend):
    """A backend whose transcriptions never finish on their own; it records that one was cancelled."""

    def __init__(self, inner: LocalBackend[Any]) -> None:
        super().__init__(inner, asyncio.Event())
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def start(self) -> None:
        """Nothing to load."""

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """Wait until cancelled."""
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")


async def test_a_client_gone_while_its_audio_is_transcribed_cancels_the_work(
    start_server: StartServer, local_backend: LocalBackend[Any]
) -> None:
    """Closing the connection after the upload cancels the transcription at once and deletes the upload."""
    backend = HangingBackend(local_backend)
    server = await start_server({BackendKind.LOCAL: backend}, http_port=0)
    caller = asyncio.create_task(post_form(server, multipart(("model", "whisper-1"), ("file", SPEECH.read_bytes()))))
    await asyncio.wait_for(backend.started.wait(), 30)
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(backend.cancelled.wait(), 10)
    await settled(server)


async def test_request_ids_call_log_and_metrics(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """x-request-id comes back (given or made), and each call is logged and counted as the gRPC calls are."""
    server = await start_server(http_port=0)
    caplog.set_level(logging.INFO, logger="service.calls")
    caplog.handler.addFilter(RequestIdFilter())
    client = sdk(server)
    answer = await client.audio.transcriptions.with_raw_response.create(
        file=SPEECH, model="whisper-1", extra_headers={"x-request-id": "req-http-42"}
    )
    assert answer.headers["x-request-id"] == "req-http-42"
    with pytest.raises(openai.NotFoundError) as refused:
        await client.models.retrieve("gpt-99")
    assert re.fullmatch(r"[0-9a-f]{32}", refused.value.response.headers["x-request-id"])
    calls = {r.__dict__["rpc_method"]: r.__dict__ for r in caplog.records if r.name == "service.calls"}
    ok = calls["POST /v1/audio/transcriptions"]
    assert (ok["code"], ok["backend"], ok["model"], ok["request_id"]) == ("200", "local", "tiny.en", "req-http-42")
    assert ok["audio_seconds"] > 10
    assert (calls["GET /v1/models/{model:path}"]["code"], calls["GET /v1/models/{model:path}"]["reason"]) == (
        "404",
        "MODEL_NOT_FOUND",
    )
    registry = server.metrics.registry
    labels = {"method": "POST /v1/audio/transcriptions", "code": "200"}
    assert registry.get_sample_value("transcribe_calls_total", labels) == 1
    assert registry.get_sample_value("transcribe_in_flight_calls", {"method": labels["method"]}) == 0


async def test_probes_docs_and_unknown_routes(start_server: StartServer) -> None:
    """/healthz and /readyz answer, /docs and the OpenAPI schema describe the routes, other paths are OpenAI 404s."""
    server = await start_server(http_port=0)
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        assert "swagger" in (await client.get("/docs")).text.lower()
        schema = (await client.get("/openapi.json")).json()
        form = schema["paths"][TRANSCRIPTIONS]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert {"file", "model", "response_format", "timestamp_granularities[]", "stream"} <= set(form["properties"])
        missing = await client.get("/v1/nothing-here")
        assert missing.status_code == 404
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


async def test_answers_are_not_held_back_by_nagles_algorithm(start_server: StartServer) -> None:
    """Every connection the HTTP face accepts has TCP_NODELAY set, as gRPC's have: with Nagle's algorithm on, the
    body of an answer written after its headers can wait for the client's delayed ACK (about 40 ms on Linux)."""
    server = await start_server(http_port=0)
    assert server.http is not None
    host, port = server.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert server.http._server is not None
        connections = server.http._server.server_state.connections  # uvicorn's open connections
        sockets = [c.transport.get_extra_info("socket") for c in connections]
        assert sockets
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_one_server_fronts_another_through_its_http_face(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """The API backend of one server, pointed at a second server's HTTP face, transcribes through it with words."""
    front_of = await start_server(http_port=0)
    backend = OpenAIBackend(
        api_key="unused",
        base_url=f"{front_of.http_url}/v1",
        default_model="whisper-1",
        timeout_seconds=60,
        max_retries=0,
        workers=2,
    )
    relay = await start_server({BackendKind.OPENAI: backend}, default_backend="openai", openai_api_key="unused")
    config = pb.TranscriptionConfig(model="tiny.en", enable_word_time_offsets=True)
    reply = await relay.stub.Transcribe(pb.TranscribeRequest(content=SPEECH.read_bytes(), config=config), timeout=120)
    transcript = reply.transcript
    assert transcript.backend == pb.BACKEND_OPENAI
    assert transcript.model == "tiny.en"
    assert_has_words(transcript.text, spoken["speech_en.wav"].expected_words)
    assert transcript.segments
    assert any(segment.words for segment in transcript.segments)


async def test_serve_hosts_both_faces_and_drains_http_with_grpc(
    tmp_path: Path, local_backend: LocalBackend[Any]
) -> None:
    """serve() answers /readyz 503 until the backends load, 200 after; on stop an HTTP call in flight completes."""
    gate, stop = asyncio.Event(), asyncio.Event()
    port = free_port()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        http_host="127.0.0.1",
        http_port=port,
        temp_dir=tmp_path / "uploads",
        data_dir=tmp_path / "data",
    )
    app = build_app(settings, backends={BackendKind.LOCAL: GatedBackend(local_backend, gate)})
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, stop, listening))
    await asyncio.wait_for(listening, 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        assert (await client.get("/readyz")).status_code == 503
        gate.set()
        for _ in range(100):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        in_flight = asyncio.create_task(
            client.post(
                TRANSCRIPTIONS,
                content=multipart(("model", "whisper-1"), ("file", SPEECH.read_bytes())),
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
        )
        await asyncio.sleep(0.5)
        stop.set()
        answer = await in_flight
    assert answer.status_code == 200
    assert "fox" in answer.json()["text"].lower()
    await asyncio.wait_for(task, 60)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as late:
            await late.get(f"http://127.0.0.1:{port}/healthz")
    assert not app.store.run_dir.exists()


def test_the_readme_lists_every_http_error_with_its_status() -> None:
    """Each domain error's reason is in the README's HTTP error table, on the row of the status it is sent with."""
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d{3}) \| (.+) \|$", readme, re.M)
    documented = {reason: int(status) for status, reasons in rows for reason in re.findall(r"`([A-Z_]+)`", reasons)}
    for error_class, (status, _) in STATUSES.items():
        assert documented.get(error_class.reason) == status, f"{error_class.reason} should be on the {status} row"


def test_every_domain_error_has_an_http_status() -> None:
    """The HTTP error table covers every error the domain defines, so none falls through to a bare 500."""
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.TranscribeError) and value is not errors.TranscribeError
    }
    assert defined <= STATUSES.keys(), sorted(error.__name__ for error in defined - STATUSES.keys())

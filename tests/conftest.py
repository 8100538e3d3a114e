"""Shared fixtures: the real model loaded once, a loopback OpenAI-compatible server, and real gRPC servers."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.longrunning import operations_grpc_pb2 as lro_grpc
from grpc_health.v1 import health

from service.audio.store import UploadStore
from service.backends.base import TranscriptionBackend
from service.backends.local import LocalBackend
from service.backends.openai_api import OpenAIBackend
from service.calls.log import CallRecorder
from service.calls.metrics import CallMetrics
from service.core.live import LiveTranscriber
from service.core.transcriber import Transcriber
from service.domain import BackendKind
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine
from service.engines.openai_whisper import OpenAIWhisperEngine
from service.faces.grpc.app import create_server, set_serving
from service.faces.http import HttpServer, Readiness, create_app, create_server_for
from service.jobs.service import JobService
from service.settings import Settings
from service.wiring import build_app
from tests.fakes.file_server import FileServer
from tests.fakes.openai_server import FakeOpenAIServer
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
# Converted and joined models are cached across runs like a real server's cache (not a temp file).
MODEL_CACHE = Path(os.environ.get("TRANSCRIBE_TEST_MODEL_CACHE", REPO / ".cache" / "models"))


@dataclass(frozen=True)
class Fixture:
    """A spoken fixture file and what a correct transcript of it contains."""

    path: Path
    language: str
    text: str
    expected_words: tuple[str, ...]
    duration: float
    translated_words: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def spoken() -> dict[str, Fixture]:
    """Every spoken fixture in tests/data, by file name."""
    manifest = json.loads((DATA / "fixtures.json").read_text())
    return {
        entry["file"]: Fixture(
            path=DATA / entry["file"],
            language=entry["language"],
            text=entry["text"],
            expected_words=tuple(entry["expected_words"]),
            duration=float(entry["duration_s"]),
            translated_words=tuple(entry.get("translated_words", ())),
        )
        for entry in manifest["speech"]
    }


@pytest.fixture
def files(spoken: dict[str, Fixture]) -> Iterator[FileServer]:
    """A loopback file server with the English fixture at /speech.wav and a copy at /held.wav that answers only once
    released, which keeps a job worker busy for as long as a test needs."""
    with FileServer() as server:
        audio = spoken["speech_en.wav"].path.read_bytes()
        server.files |= {"/speech.wav": audio, "/held.wav": audio}
        server.held.add("/held.wav")
        yield server


@pytest.fixture(scope="session")
async def local_backend() -> AsyncIterator[LocalBackend[Any]]:
    """The default local backend: bundled tiny.en on faster-whisper (int8), loaded once."""
    backend = LocalBackend(
        engine=FasterWhisperEngine(cache_dir=MODEL_CACHE, cpu_threads=1, num_workers=2),
        specs=local_model_specs("tiny.en", MODEL_CACHE),
        default_model="tiny.en",
        workers=2,
    )
    await backend.start()
    yield backend
    await backend.aclose()


@pytest.fixture(scope="session")
async def reference_backend() -> AsyncIterator[LocalBackend[Any]]:
    """The reference local backend: bundled tiny.en converted for openai-whisper, loaded once."""
    backend = LocalBackend(
        engine=OpenAIWhisperEngine(cache_dir=MODEL_CACHE, replicas=1),
        specs=local_model_specs("tiny.en", MODEL_CACHE),
        default_model="tiny.en",
        workers=1,
    )
    await backend.start()
    yield backend
    await backend.aclose()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A loopback OpenAI-compatible server."""
    with FakeOpenAIServer() as server:
        yield server


@dataclass
class RunningServer:
    """A started in-process server and what a test needs to talk to it."""

    target: str
    channel: grpc.aio.Channel
    stub: pb_grpc.TranscribeServiceAsyncStub
    store: UploadStore
    transcriber: Transcriber
    live: LiveTranscriber
    health: health.aio.HealthServicer
    server: grpc.aio.Server
    settings: Settings
    metrics: CallMetrics
    jobs: JobService
    operations: lro_grpc.OperationsStub
    owned: list[TranscriptionBackend] = field(default_factory=list)
    http: HttpServer | None = None
    http_url: str = ""
    """The HTTP face's base URL (http://127.0.0.1:port) when it was asked for with http_port=0."""


StartServer = Callable[..., Awaitable[RunningServer]]


def openai_backend_for(fake: FakeOpenAIServer, **overrides: Any) -> OpenAIBackend:
    """An API backend pointed at the loopback server, with fast failure settings for tests."""
    options: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "default_model": "gpt-4o-mini-transcribe",
        "timeout_seconds": 5.0,
        "max_retries": 0,
        "workers": 4,
    }
    options.update(overrides)
    return OpenAIBackend(**options)


@pytest.fixture
async def start_server(tmp_path: Path, local_backend: LocalBackend[Any]) -> AsyncIterator[StartServer]:
    """Starts real servers on 127.0.0.1:0 (the HTTP face too with http_port=0); at teardown each must have left no
    upload file behind."""
    running: list[RunningServer] = []
    uploads = tmp_path / "uploads"
    data = tmp_path / "data"

    async def start(backends: dict[BackendKind, TranscriptionBackend] | None = None, **overrides: Any) -> RunningServer:
        defaults: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "http_host": "127.0.0.1", "http_port": -1}
        data_dir = data / str(len(running))
        settings = Settings(**defaults | {"temp_dir": uploads, "data_dir": data_dir} | overrides)
        chosen = backends if backends is not None else {BackendKind.LOCAL: local_backend}
        app = build_app(settings, chosen)
        store, transcriber = app.store, app.transcriber
        store.open()
        await app.jobs.open()
        metrics = CallMetrics(transcriber)
        recorder = CallRecorder(metrics)
        server, port, health_servicer = create_server(
            settings, transcriber, app.live, recorder, jobs=app.jobs, fetcher=app.fetcher
        )
        await server.start()
        http, http_url = None, ""
        if settings.http_port >= 0:
            readiness = Readiness()
            readiness.ready = True
            http = create_server_for(create_app(settings, transcriber, app.live, recorder, readiness), settings)
            http_url = f"{http.scheme}://127.0.0.1:{await http.start()}"
        await transcriber.start()
        await app.jobs.start()
        await set_serving(health_servicer, serving=True)
        target = f"127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", -1)])
        handle = RunningServer(
            target=target,
            channel=channel,
            stub=pb_grpc.TranscribeServiceStub(channel),
            store=store,
            transcriber=transcriber,
            live=app.live,
            health=health_servicer,
            server=server,
            settings=settings,
            metrics=metrics,
            jobs=app.jobs,
            operations=lro_grpc.OperationsStub(channel),  # type: ignore[no-untyped-call]
            owned=[b for b in chosen.values() if not isinstance(b, LocalBackend)],
            http=http,
            http_url=http_url,
        )
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.channel.close()
        await handle.server.stop(None)
        if handle.http is not None:
            await handle.http.stop()
        await handle.jobs.aclose()
        await handle.transcriber.settle(10)
        job_audio = handle.jobs.audio.names()
        leftovers = handle.store.files()
        handle.store.close()
        for backend in handle.owned:
            await backend.aclose()
        assert leftovers == [], f"upload files left behind: {leftovers}"
        assert job_audio == [], f"job audio left behind: {job_audio}"
    if uploads.exists():
        assert [p for p in uploads.rglob("*") if p.is_file()] == []

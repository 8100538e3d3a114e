"""Server lifecycle: configuration at start-up, health transitions, SIGTERM drain, crash leftovers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.__main__ import serve
from service.audio.store import UploadStore
from service.backends.local import LocalBackend
from service.domain import AudioFile, BackendKind, ModelDescription, Progress, Transcript, TranscriptionOptions
from service.settings import Settings
from service.wiring import build_app
from tests.conftest import DATA, MODEL_CACHE, REPO
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a server process: loopback, ephemeral port, private temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSCRIBE_", "OPENAI_"))}
    env.update(
        TRANSCRIBE_HOST="127.0.0.1",
        TRANSCRIBE_PORT="0",
        TRANSCRIBE_HTTP_HOST="127.0.0.1",
        TRANSCRIBE_HTTP_PORT="0",
        TRANSCRIBE_TEMP_DIR=str(tmp_path / "uploads"),
        TRANSCRIBE_DATA_DIR=str(tmp_path / "data"),
        TRANSCRIBE_MODEL_CACHE_DIR=str(MODEL_CACHE),
        TRANSCRIBE_LOCAL_WORKERS="1",
    )
    env.update(extra)
    return env


def test_openai_default_without_key_refuses_to_start(tmp_path: Path) -> None:
    """With the API backend as default and no key, the server exits 2 and says what to set."""
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env=server_env(tmp_path, TRANSCRIBE_DEFAULT_BACKEND="openai"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


class GatedBackend:
    """Wraps a backend so a test decides when start-up finishes."""

    kind = BackendKind.LOCAL
    workers = 1
    wants_whisper_input = True

    def __init__(self, inner: LocalBackend[Any], gate: asyncio.Event) -> None:
        self._inner = inner
        self._gate = gate

    async def start(self) -> None:
        """Wait for the test to open the gate."""
        await self._gate.wait()

    def check(self, options: TranscriptionOptions) -> None:
        """As the wrapped backend."""
        self._inner.check(options)

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """As the wrapped backend."""
        return await self._inner.transcribe(audio, options, deadline, progress)

    def models(self) -> list[ModelDescription]:
        """As the wrapped backend."""
        return self._inner.models()

    async def aclose(self) -> None:
        """The wrapped backend is shared; nothing to close."""


async def test_health_is_not_serving_until_backends_are_ready_and_after_stop(
    tmp_path: Path, local_backend: LocalBackend[Any]
) -> None:
    """Health is NOT_SERVING while models load, SERVING when ready, NOT_SERVING on shutdown."""
    gate, stop = asyncio.Event(), asyncio.Event()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        http_host="127.0.0.1",
        http_port=0,
        temp_dir=tmp_path / "uploads",
        data_dir=tmp_path / "data",
    )
    app = build_app(settings, backends={BackendKind.LOCAL: GatedBackend(local_backend, gate)})
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, stop, listening))
    port = await asyncio.wait_for(listening, 30)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="transcribe.v1.TranscribeService"))
        assert (await watch.read()).status == NOT_SERVING
        gate.set()
        assert (await watch.read()).status == SERVING
        stub = pb_grpc.TranscribeServiceStub(channel)
        reply = await stub.Transcribe(pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes()), timeout=60)
        assert "fox" in reply.transcript.text.lower()
        stop.set()
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
    await asyncio.wait_for(task, 60)
    assert not app.store.run_dir.exists()


def test_start_up_sweeps_folders_of_dead_servers(tmp_path: Path) -> None:
    """A folder left by a crashed server is removed at start-up; a live server's folder is kept."""
    live = UploadStore(tmp_path)
    live.open()
    (live.run_dir / "live.wav").write_bytes(b"x")
    dead = live.root / "run-99999999-deadbeef"
    dead.mkdir(mode=0o700)
    (dead / "leftover.mp3").write_bytes(b"x")
    (dead / ".lock").write_bytes(b"")
    fresh = UploadStore(tmp_path)
    fresh.open()
    try:
        assert not dead.exists()
        assert (live.run_dir / "live.wav").exists()
        assert oct(fresh.root.stat().st_mode & 0o777) == "0o700"
        assert oct(fresh.run_dir.stat().st_mode & 0o777) == "0o700"
    finally:
        fresh.close()
        live.close()
    assert list(live.root.iterdir()) == []


@pytest.fixture
def slow_api() -> Iterator[FakeOpenAIServer]:
    """A loopback API whose first answer takes two seconds."""
    with FakeOpenAIServer() as api:
        api.enqueue(Fault.slow(2.0))
        yield api


def test_sigterm_drains_in_flight_calls_and_exits_cleanly(tmp_path: Path, slow_api: FakeOpenAIServer) -> None:
    """On SIGTERM a real server finishes the call in flight, refuses new ones, exits 0 and leaves no file."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=server_env(
            tmp_path,
            OPENAI_API_KEY=slow_api.api_key or "",
            OPENAI_BASE_URL=slow_api.base_url,
            TRANSCRIBE_GRACE_PERIOD_SECONDS="20",
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port is not None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.TranscribeServiceStub(channel)
            config = pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI)
            future = stub.Transcribe.future(
                pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=config), timeout=60
            )
            slow_api.wait_for_requests(1, timeout=30)
            process.send_signal(signal.SIGTERM)
            assert future.result().transcript.text
            with pytest.raises(grpc.RpcError) as refused:
                stub.Transcribe(pb.TranscribeRequest(content=b"x", config=config), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    uploads = tmp_path / "uploads"
    assert [p for p in uploads.rglob("*") if p.is_file()] == []


def test_sigterm_ends_live_streams_with_their_last_final(tmp_path: Path) -> None:
    """On SIGTERM a live stream still sending gets the final of the utterance in progress, then ends OK."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=server_env(tmp_path, TRANSCRIBE_GRACE_PERIOD_SECONDS="20"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    hold = threading.Event()
    pcm = (DATA / "speech_en_s16le_16k_mono.pcm").read_bytes()[: 16000 * 2 * 3]

    def requests() -> Iterator[pb.TranscribeLiveRequest]:
        yield pb.TranscribeLiveRequest(
            live_config=pb.LiveConfig(
                audio_format=pb.LIVE_AUDIO_FORMAT_LINEAR16,
                sample_rate_hertz=16000,
                audio_channel_count=1,
                interim_results=True,
            )
        )
        for start in range(0, len(pcm), 3200):
            yield pb.TranscribeLiveRequest(audio_content=pcm[start : start + 3200])
        hold.wait(60)

    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
            if "backends ready" in line:
                break
        assert port is not None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = pb_grpc.TranscribeServiceStub(channel).TranscribeLive(requests(), timeout=60)
            assert next(call).model == "tiny.en"
            assert not next(call).results[0].is_final, "an interim shows the server has heard speech"
            process.send_signal(signal.SIGTERM)
            finals = [result.text for response in call for result in response.results if result.is_final]
            assert call.code() == grpc.StatusCode.OK
        assert "quick" in " ".join(finals).lower()
        assert process.wait(timeout=60) == 0
    finally:
        hold.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

"""Run the real server (`python -m service`) in a subprocess and talk to it over gRPC."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import MODEL_CACHE, say
from tests.processes import ServiceProcess
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

_LISTENING = re.compile(r"listening on (\S+):(\d+)")
STARTUP_TIMEOUT_SECONDS = 180.0
STREAM_CHUNK_BYTES = 256 * 1024  # the Python client's default chunk size
SERVER_STOP_SECONDS = 30.0
LOG_LINES = 200
"""Lines of a benchmark process's output kept (an hour's run writes many)."""


def server_env(**settings: str) -> dict[str, str]:
    """The environment of a benchmark server: loopback, a free port, the repo's model cache, plus settings."""
    env = dict(os.environ)
    env.update(
        {
            "TRANSCRIBE_HOST": "127.0.0.1",
            "TRANSCRIBE_PORT": "0",
            "TRANSCRIBE_HTTP_HOST": "127.0.0.1",
            "TRANSCRIBE_HTTP_PORT": "0",
            "TRANSCRIBE_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "TRANSCRIBE_GRACE_PERIOD_SECONDS": "2",
            "TRANSCRIBE_LOG_LEVEL": "INFO",
        }
    )
    env.update({f"TRANSCRIBE_{name.upper()}": value for name, value in settings.items()})
    return env


class ServerProcess:
    """`python -m service` with the given settings; entering waits until it reports SERVING."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self._env = server_env(**(settings or {}))
        self._data = None
        if "data_dir" not in (settings or {}):
            self._data = tempfile.TemporaryDirectory(prefix="transcribe-bench-data-")
            self._env["TRANSCRIBE_DATA_DIR"] = self._data.name
        self._process: ServiceProcess | None = None
        self._port: int | None = None
        self.channel: grpc.Channel | None = None
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._process is not None
        return self._process.pid

    @property
    def target(self) -> str:
        """host:port to connect to."""
        assert self._port is not None
        return f"127.0.0.1:{self._port}"

    @property
    def stub(self) -> pb_grpc.TranscribeServiceStub:
        """A TranscribeService stub on the shared channel."""
        assert self.channel is not None
        return pb_grpc.TranscribeServiceStub(self.channel)

    def log_tail(self) -> str:
        """The last lines the server wrote."""
        assert self._process is not None
        return self._process.log_tail()

    def __enter__(self) -> ServerProcess:
        started = time.perf_counter()
        self._process = ServiceProcess([sys.executable, "-m", "service"], self._env, keep=LOG_LINES)
        try:
            self._port = int(self._process.wait_for(_LISTENING, STARTUP_TIMEOUT_SECONDS)[2])
            self._wait_serving(started + STARTUP_TIMEOUT_SECONDS)
        except BaseException:
            self._stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        say(f"server pid {self.pid} serving on {self.target} after {self.startup_seconds:.1f} s")
        return self

    def _wait_serving(self, deadline: float) -> None:
        self.channel = grpc.insecure_channel(
            self.target,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        health = health_pb2_grpc.HealthStub(self.channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        while time.perf_counter() < deadline:
            assert self._process is not None
            if not self._process.running():
                raise RuntimeError(f"the server exited:\n{self.log_tail()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                if reply.status == serving:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not report SERVING:\n{self.log_tail()}")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()
        if self._data is not None:
            self._data.cleanup()

    def _stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self._process is not None:
            self._process.stop(SERVER_STOP_SECONDS)


def unary(stub: pb_grpc.TranscribeServiceStub, content: bytes) -> pb.Transcript:
    """Transcribe a whole file in one message with the server's default config."""
    request = pb.TranscribeRequest(config=pb.TranscriptionConfig(), content=content)
    response: pb.TranscribeResponse = stub.Transcribe(request, timeout=3600)
    return response.transcript


def stream_requests(content: bytes, chunk: int = STREAM_CHUNK_BYTES) -> Iterator[pb.TranscribeStreamRequest]:
    """The config, then the file in chunks."""
    yield pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())
    view = memoryview(content)
    for offset in range(0, len(content), chunk):
        yield pb.TranscribeStreamRequest(audio_content=bytes(view[offset : offset + chunk]))


def streaming(stub: pb_grpc.TranscribeServiceStub, content: bytes) -> pb.Transcript:
    """Transcribe a file uploaded in chunks with TranscribeStream."""
    response: pb.TranscribeStreamResponse = stub.TranscribeStream(stream_requests(content), timeout=3600)
    return response.transcript


def file_requests(path: Path, chunk: int = STREAM_CHUNK_BYTES) -> Iterator[pb.TranscribeStreamRequest]:
    """The config, then the file read from disk in chunks."""
    yield pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())
    with path.open("rb") as audio:
        while piece := audio.read(chunk):
            yield pb.TranscribeStreamRequest(audio_content=piece)


def streaming_file(stub: pb_grpc.TranscribeServiceStub, path: Path, timeout: float = 3600) -> pb.Transcript:
    """Transcribe a file streamed from disk with TranscribeStream, whatever its size."""
    response: pb.TranscribeStreamResponse = stub.TranscribeStream(file_requests(path), timeout=timeout)
    return response.transcript

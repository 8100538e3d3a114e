"""Run the real server (`python -m service`) in a subprocess and talk to it over gRPC."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import MODEL_CACHE, REPO, say
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

_LISTENING = re.compile(r"listening on (\S+):(\d+)")
STARTUP_TIMEOUT_SECONDS = 180.0
STREAM_CHUNK_BYTES = 256 * 1024  # the Python client's default chunk size


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


class ServiceProcess:
    """`python -m MODULE` in the repo with the given environment: its stderr kept by a thread, started until a line
    matches `ready`, stopped with SIGTERM (SIGKILL after `stop_timeout`)."""

    def __init__(self, module: str, env: Mapping[str, str], ready: re.Pattern[str], stop_timeout: float) -> None:
        self.module = module
        self._env = dict(env)
        self._ready_pattern = ready
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self.ready_line: re.Match[str] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._process is not None
        return self._process.pid

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> str:
        """The last lines the process wrote to stderr."""
        return "\n".join(self._log)

    def _read_stderr(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._log.append(line.rstrip())
            if self.ready_line is None and (match := self._ready_pattern.search(line)):
                self.ready_line = match
                self._ready.set()

    def start(self, deadline: float) -> None:
        """Start the process and wait (until time.perf_counter() passes `deadline`) for its ready line."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stderr, name=f"{self.module}-log", daemon=True).start()
        while not self._ready.wait(0.1):
            if not self.running() or time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"python -m {self.module} did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the stop timeout."""
        if not self.running():
            return
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class ServerProcess:
    """`python -m service` with the given settings; entering waits until it reports SERVING."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        env = server_env(**(settings or {}))
        self._data = None
        if "data_dir" not in (settings or {}):
            self._data = tempfile.TemporaryDirectory(prefix="transcribe-bench-data-")
            env["TRANSCRIBE_DATA_DIR"] = self._data.name
        self._process = ServiceProcess("service", env, _LISTENING, stop_timeout=30.0)
        self._port: int | None = None
        self.channel: grpc.Channel | None = None
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int:
        """The server's process id."""
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
        """The last lines the server wrote to stderr."""
        return self._process.log_tail()

    def __enter__(self) -> ServerProcess:
        started = time.perf_counter()
        try:
            self._process.start(started + STARTUP_TIMEOUT_SECONDS)
            assert self._process.ready_line is not None
            self._port = int(self._process.ready_line[2])
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
        self._process.stop()


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

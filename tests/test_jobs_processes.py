"""Jobs across real processes: the embedded store survives kill -9, and Celery on a real Redis server spreads jobs
over two servers and two workers, surviving a worker's kill -9 and cancelling across servers."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_grpc_pb2 as lro_grpc
from google.longrunning import operations_proto_pb2 as lro
from google.protobuf import duration_pb2
from google.rpc import code_pb2

from tests.conftest import DATA, MODEL_CACHE
from tests.fakes.file_server import FileServer
from tests.processes import REDIS_STOP_SECONDS, ServiceProcess, start_redis
from tests.test_jobs import metadata_of
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

AUDIO = (DATA / "speech_en.wav").read_bytes()


def base_env(tmp_path: Path, files: FileServer, **extra: str) -> dict[str, str]:
    """A hermetic environment for a server or worker: loopback, private folders, the loopback file server opened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSCRIBE_", "OPENAI_"))}
    env.update(
        TRANSCRIBE_HOST="127.0.0.1",
        TRANSCRIBE_PORT="0",
        TRANSCRIBE_HTTP_PORT="-1",
        TRANSCRIBE_MODEL_CACHE_DIR=str(MODEL_CACHE),
        TRANSCRIBE_LOCAL_WORKERS="1",
        TRANSCRIBE_LIVE_WORKERS="1",
        TRANSCRIBE_GRACE_PERIOD_SECONDS="5",
        TRANSCRIBE_URI_ALLOWLIST="127.0.0.1/32",
        TRANSCRIBE_URI_ALLOWED_PORTS=str(files.port),
        TRANSCRIBE_JOBS_LEASE_SECONDS="2",
    )
    env.update(extra)
    return env


def start_server(env: dict[str, str], name: str) -> tuple[ServiceProcess, str]:
    """A `python -m service` process and its address, once it serves."""
    process = ServiceProcess(
        [sys.executable, "-m", "service"], env | {"TRANSCRIBE_TEMP_DIR": env["TRANSCRIBE_TEMP_DIR"] + name}
    )
    port = process.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    process.wait_for(r"backends ready; serving")
    return process, f"127.0.0.1:{port}"


class Client:
    """Stubs of both services on one channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.jobs = pb_grpc.TranscribeServiceStub(self.channel)
        self.operations = lro_grpc.OperationsStub(self.channel)  # type: ignore[no-untyped-call]

    def get(self, name: str) -> lro.Operation:
        """The operation now."""
        operation: lro.Operation = self.operations.GetOperation(lro.GetOperationRequest(name=name), timeout=10)
        return operation

    def wait(self, name: str, seconds: float = 120.0) -> lro.Operation:
        """The operation once done, calling WaitOperation again until then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            request = lro.WaitOperationRequest(name=name, timeout=duration_pb2.Duration(seconds=10))
            operation: lro.Operation = self.operations.WaitOperation(request, timeout=30)
            if operation.done:
                return operation
        raise AssertionError(f"{name} did not finish")

    def wait_state(self, name: str, state: pb.JobState.ValueType) -> lro.Operation:
        """Poll until the job reaches `state` (driven there by the test)."""
        for _ in range(1200):
            operation = self.get(name)
            if metadata_of(operation).state == state:
                return operation
            time.sleep(0.05)
        raise AssertionError(f"{name} never reached {pb.JobState.Name(state)}")

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def transcript_of(operation: lro.Operation) -> str:
    """The text of a succeeded job."""
    response = pb.SubmitTranscriptionResponse()
    assert operation.response.Unpack(response), operation
    return response.transcript.text


def test_accepted_jobs_survive_kill_9_and_run_after_restart(tmp_path: Path, files: FileServer) -> None:
    """A running and a queued job of a server killed with SIGKILL both finish after it starts again on its folder."""
    env = base_env(tmp_path, files, TRANSCRIBE_DATA_DIR=str(tmp_path / "data"), TRANSCRIBE_JOBS_WORKERS="1")
    env["TRANSCRIBE_TEMP_DIR"] = str(tmp_path / "uploads")
    server, target = start_server(env, "")
    client = Client(target)
    try:
        running = client.jobs.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
        client.wait_state(running.name, pb.JOB_STATE_RUNNING)
        queued = client.jobs.SubmitTranscription(pb.SubmitTranscriptionRequest(content=AUDIO))
        assert metadata_of(queued).state == pb.JOB_STATE_QUEUED
        server.popen.kill()
        server.stop()
        client.close()
        files.release()
        server, target = start_server(env, "")
        client = Client(target)
        finished = client.wait(running.name)
        assert "fox" in transcript_of(finished).lower()
        assert metadata_of(finished).attempt == 2
        assert "fox" in transcript_of(client.wait(queued.name)).lower()
        assert list((tmp_path / "data" / "audio").iterdir()) == []
    finally:
        client.close()
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a loopback port, private to the test, stopped at teardown."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is missing: `make test` installs it (make redis)"
    folder = tmp_path / "redis"
    folder.mkdir()
    redis, url = start_redis(binary, folder)
    try:
        yield url
    finally:
        redis.stop(REDIS_STOP_SECONDS)


def test_celery_workers_share_jobs_across_servers(tmp_path: Path, files: FileServer, redis_url: str) -> None:
    """Two servers and two workers on one Redis: submit on one server and wait on the other; a worker killed with
    SIGKILL mid-job loses nothing (the job runs again on the other worker); a cancel through the other server stops
    the job on its worker."""
    env = base_env(
        tmp_path,
        files,
        TRANSCRIBE_BROKER_URL=redis_url,
        TRANSCRIBE_DATA_DIR=str(tmp_path / "shared"),
        TRANSCRIBE_TEMP_DIR=str(tmp_path / "uploads"),
        TRANSCRIBE_JOBS_WORKERS="1",
    )
    processes: list[ServiceProcess] = []
    clients: list[Client] = []
    try:
        for index in range(2):
            server, target = start_server(env, str(index))
            processes.append(server)
            clients.append(Client(target))
        workers = []
        for index in range(2):
            worker, _ = ServiceProcess.started(
                [sys.executable, "-m", "service.worker"],
                env | {"TRANSCRIBE_TEMP_DIR": f"{env['TRANSCRIBE_TEMP_DIR']}w{index}"},
                r"ready\.",
            )
            processes.append(worker)
            workers.append(worker)
        one, other = clients

        uploaded = one.jobs.SubmitTranscription(pb.SubmitTranscriptionRequest(content=AUDIO))
        assert "fox" in transcript_of(other.wait(uploaded.name)).lower()

        held = one.jobs.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
        running = other.wait_state(held.name, pb.JOB_STATE_RUNNING)
        first_worker = metadata_of(running).worker
        victim = next(w for w in workers if first_worker.endswith(f":{w.popen.pid}"))
        assert files.started.wait(30)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(timeout=30)
        files.release()
        recovered = other.wait(held.name)
        assert "fox" in transcript_of(recovered).lower()
        assert metadata_of(recovered).attempt == 2
        assert metadata_of(recovered).worker != first_worker

        files.held.add("/held-again.wav")
        files.files["/held-again.wav"] = AUDIO
        files.hold()
        stuck = other.jobs.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held-again.wav")))
        one.wait_state(stuck.name, pb.JOB_STATE_RUNNING)
        assert files.started.wait(30)
        one.operations.CancelOperation(lro.CancelOperationRequest(name=stuck.name), timeout=10)
        cancelled = other.wait(stuck.name, seconds=30)
        assert cancelled.error.code == code_pb2.CANCELLED
        assert metadata_of(cancelled).state == pb.JOB_STATE_CANCELLED
        listed = one.operations.ListOperations(lro.ListOperationsRequest(filter="done = true"), timeout=10)
        assert {op.name for op in listed.operations} == {uploaded.name, held.name, stuck.name}
        assert list((tmp_path / "shared" / "audio").iterdir()) == []
    finally:
        files.release()
        for client in clients:
            client.close()
        for process in processes:
            process.stop()

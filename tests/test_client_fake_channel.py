"""Pins the sync client's wire behaviour against grpc_testing's fake channel."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import grpc_testing
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.client import PcmFormat, TranscribeClient
from transcribe_client.errors import TranscribeError

SERVICE = pb.DESCRIPTOR.services_by_name["TranscribeService"]
TRANSCRIBE = SERVICE.methods_by_name["Transcribe"]
TRANSCRIBE_STREAM = SERVICE.methods_by_name["TranscribeStream"]
LIST_MODELS = SERVICE.methods_by_name["ListModels"]
DETAILS_KEY = "grpc-status-details-bin"
WAIT_SECONDS = 10.0

T = TypeVar("T")


@dataclass
class RecordedCall:
    """One invocation the client made: the method path and its keyword arguments."""

    method: str
    kwargs: dict[str, Any]


@dataclass
class RecordingChannel:
    """Wraps the fake channel to record each call's timeout and metadata, which grpc_testing drops."""

    channel: Any
    calls: list[RecordedCall] = field(default_factory=list)
    closed: bool = False

    def unary_unary(self, method: str, **_: Any) -> RecordingCallable:
        return RecordingCallable(self, method, self.channel.unary_unary(method))

    def stream_unary(self, method: str, **_: Any) -> RecordingCallable:
        return RecordingCallable(self, method, self.channel.stream_unary(method))

    def stream_stream(self, method: str, **_: Any) -> RecordingCallable:
        return RecordingCallable(self, method, self.channel.stream_stream(method))

    def close(self) -> None:
        self.closed = True


@dataclass
class RecordingCallable:
    """A multi-callable that records its keyword arguments before delegating to the fake."""

    owner: RecordingChannel
    method: str
    inner: Any

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        self.owner.calls.append(RecordedCall(self.method, kwargs))
        return self.inner(request, **kwargs)

    def future(self, requests: Any, **kwargs: Any) -> Any:
        self.owner.calls.append(RecordedCall(self.method, kwargs))
        return self.inner.future(requests, **kwargs)


def as_channel(recorder: RecordingChannel) -> grpc.Channel:
    """The recorder typed as the channel it stands in for (it has the methods the client uses)."""
    return cast(grpc.Channel, recorder)


@dataclass
class Fake:
    """The fake channel, its recorder and a client wired to them."""

    channel: Any
    recorder: RecordingChannel
    client: TranscribeClient


@pytest.fixture
def fake() -> Iterator[Fake]:
    """A sync client on a recording wrapper around grpc_testing's fake channel."""
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    recorder = RecordingChannel(channel)
    client = TranscribeClient(channel=as_channel(recorder), token="s3cret", timeout=42.0, chunk_size=1000)
    yield Fake(channel, recorder, client)
    client.close()


def start(function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Run a blocking client call on a daemon thread (a stuck call never blocks pytest's exit)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def rendezvous(take: Callable[[], T], call: Future[Any]) -> T:
    """Run a blocking take_* of the fake, failing instead of hanging if the client call ends first."""
    box: queue.Queue[T] = queue.Queue()
    threading.Thread(target=lambda: box.put(take()), daemon=True).start()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            return box.get(timeout=0.02)
        except queue.Empty:
            if call.done():
                call.result()
                raise AssertionError("the client call ended without the expected RPC") from None
    raise AssertionError("timed out waiting for the client's RPC")


def transcript(text: str) -> pb.Transcript:
    return pb.Transcript(text=text, language_code="en", backend=pb.BACKEND_LOCAL, model="base")


def take_stream(fake: Fake, call: Future[Any], chunks: int) -> tuple[Any, list[pb.TranscribeStreamRequest], Any]:
    """Take a TranscribeStream RPC and its config message plus the given number of chunk messages."""
    metadata, rpc = rendezvous(lambda: fake.channel.take_stream_unary(TRANSCRIBE_STREAM), call)
    requests = [rendezvous(rpc.take_request, call) for _ in range(chunks + 1)]
    rendezvous(rpc.requests_closed, call)
    return metadata, requests, rpc


def rich_status() -> status_pb2.Status:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="temperature must be from 0 to 1")
    info = error_details_pb2.ErrorInfo(
        reason="INVALID_TEMPERATURE", domain="transcribe.v1", metadata={"temperature": "1.5"}
    )
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="config.temperature", description="must be from 0 to 1")
        ]
    )
    status.details.add().Pack(info)
    status.details.add().Pack(bad)
    return status


def test_unary_call_carries_deadline_token_and_config(fake: Fake) -> None:
    """A small input goes out as one Transcribe request with the per-call deadline, token and config."""
    audio = b"RIFF" + bytes(range(200))
    call = start(
        fake.client.transcribe,
        audio,
        backend="openai",
        model="whisper-1",
        language="es",
        prompt="Ana, Bogotá",
        temperature=0.25,
        task="translate",
        word_timestamps=True,
        pcm=PcmFormat(sample_rate_hertz=16000, channels=2),
        timeout=7.5,
    )
    metadata, request, rpc = rendezvous(lambda: fake.channel.take_unary_unary(TRANSCRIBE), call)
    rpc.terminate(pb.TranscribeResponse(transcript=transcript("hola")), (), grpc.StatusCode.OK, "")

    assert call.result(timeout=WAIT_SECONDS).text == "hola"
    assert fake.recorder.calls[-1].method == "/transcribe.v1.TranscribeService/Transcribe"
    assert fake.recorder.calls[-1].kwargs["timeout"] == 7.5
    assert ("authorization", "Bearer s3cret") in metadata
    assert request.content == audio
    config = request.config
    assert config.backend == pb.BACKEND_OPENAI
    assert config.model == "whisper-1"
    assert config.language_code == "es"
    assert config.prompt == "Ana, Bogotá"
    assert config.HasField("temperature")
    assert config.temperature == 0.25
    assert config.task == pb.TASK_TRANSLATE
    assert config.enable_word_time_offsets
    assert config.explicit_decoding_config == pb.ExplicitDecodingConfig(
        encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=2
    )


def test_defaults_leave_optional_fields_unset_and_use_the_client_deadline(fake: Fake) -> None:
    """Without options the config asks for the server's defaults and the call uses the client's timeout."""
    call = start(fake.client.transcribe, b"abc")
    _, request, rpc = rendezvous(lambda: fake.channel.take_unary_unary(TRANSCRIBE), call)
    rpc.terminate(pb.TranscribeResponse(transcript=transcript("abc")), (), grpc.StatusCode.OK, "")

    call.result(timeout=WAIT_SECONDS)
    assert fake.recorder.calls[-1].kwargs["timeout"] == 42.0
    assert request.config.backend == pb.BACKEND_UNSPECIFIED
    assert request.config.task == pb.TASK_TRANSCRIBE
    assert not request.config.HasField("temperature")
    assert not request.config.HasField("explicit_decoding_config")


def test_list_models_uses_deadline_and_token(fake: Fake) -> None:
    """ListModels returns the server's models and carries the default deadline and the token."""
    models = [pb.ModelInfo(name="base", backend=pb.BACKEND_LOCAL, engine="faster-whisper", is_default=True)]
    call = start(fake.client.list_models)
    metadata, _, rpc = rendezvous(lambda: fake.channel.take_unary_unary(LIST_MODELS), call)
    rpc.terminate(pb.ListModelsResponse(models=models), (), grpc.StatusCode.OK, "")

    assert call.result(timeout=WAIT_SECONDS) == models
    assert fake.recorder.calls[-1].kwargs["timeout"] == 42.0
    assert ("authorization", "Bearer s3cret") in metadata


def test_streaming_sends_config_first_then_chunks_in_order(fake: Fake, tmp_path: Path) -> None:
    """A streamed file goes out as the config, then chunk_size pieces with the exact bytes, with progress."""
    audio = bytes(index % 251 for index in range(2500))
    path = tmp_path / "speech.wav"
    path.write_bytes(audio)
    reports: list[tuple[int, int | None]] = []
    call = start(
        fake.client.transcribe,
        path,
        stream=True,
        language="en",
        timeout=9.0,
        progress=lambda sent, total: reports.append((sent, total)),
    )
    metadata, requests, rpc = take_stream(fake, call, chunks=3)
    rpc.terminate(pb.TranscribeStreamResponse(transcript=transcript("streamed")), (), grpc.StatusCode.OK, "")

    assert call.result(timeout=WAIT_SECONDS).text == "streamed"
    assert fake.recorder.calls[-1].method == "/transcribe.v1.TranscribeService/TranscribeStream"
    assert fake.recorder.calls[-1].kwargs["timeout"] == 9.0
    assert ("authorization", "Bearer s3cret") in metadata
    assert [request.WhichOneof("streaming_request") for request in requests] == [
        "config",
        "audio_content",
        "audio_content",
        "audio_content",
    ]
    assert requests[0].config.language_code == "en"
    assert [request.audio_content for request in requests[1:]] == [
        audio[:1000],
        audio[1000:2000],
        audio[2000:],
    ]
    assert reports == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_large_input_streams_automatically(fake: Fake) -> None:
    """Bytes over the stream threshold go to TranscribeStream without being asked."""
    client = TranscribeClient(channel=as_channel(fake.recorder), chunk_size=1000, stream_threshold=1500)
    call = start(client.transcribe, b"x" * 1600)
    _, requests, rpc = take_stream(fake, call, chunks=2)
    rpc.terminate(pb.TranscribeStreamResponse(transcript=transcript("big")), (), grpc.StatusCode.OK, "")

    assert call.result(timeout=WAIT_SECONDS).text == "big"
    assert [len(request.audio_content) for request in requests[1:]] == [1000, 600]


def test_unsized_file_object_streams_and_reports_unknown_total(fake: Fake) -> None:
    """A pipe-like file object (not seekable) is streamed and its total is reported once it is known."""

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    reports: list[tuple[int, int | None]] = []
    pipe = io.BufferedReader(Pipe(b"y" * 1200))
    call = start(fake.client.transcribe, pipe, progress=lambda sent, total: reports.append((sent, total)))
    _, requests, rpc = take_stream(fake, call, chunks=2)
    rpc.terminate(pb.TranscribeStreamResponse(transcript=transcript("piped")), (), grpc.StatusCode.OK, "")

    assert call.result(timeout=WAIT_SECONDS).text == "piped"
    assert b"".join(request.audio_content for request in requests[1:]) == b"y" * 1200
    assert reports == [(1000, None), (1200, None), (1200, 1200)]


def test_rich_error_maps_to_transcribe_error(fake: Fake) -> None:
    """A status with ErrorInfo and BadRequest becomes a TranscribeError with code, reason and violations."""
    status = rich_status()
    call = start(fake.client.transcribe, b"abc", temperature=1.5)
    _, _, rpc = rendezvous(lambda: fake.channel.take_unary_unary(TRANSCRIBE), call)
    rpc.terminate(
        None,
        ((DETAILS_KEY, status.SerializeToString()),),
        grpc.StatusCode.INVALID_ARGUMENT,
        status.message,
    )

    with pytest.raises(TranscribeError) as caught:
        call.result(timeout=WAIT_SECONDS)
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "temperature must be from 0 to 1"
    assert error.reason == "INVALID_TEMPERATURE"
    assert error.domain == "transcribe.v1"
    assert error.metadata == {"temperature": "1.5"}
    assert error.field_violations == [("config.temperature", "must be from 0 to 1")]
    assert error.exit_code == 67
    assert str(error) == "INVALID_ARGUMENT: temperature must be from 0 to 1 [INVALID_TEMPERATURE]"


def test_stream_error_maps_to_transcribe_error(fake: Fake) -> None:
    """A failed TranscribeStream carries its ErrorInfo too."""
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="the audio is too long")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="AUDIO_TOO_LONG", domain="transcribe.v1", metadata={"max_seconds": "3600"})
    )
    call = start(fake.client.transcribe, b"z" * 10, stream=True)
    _, _, rpc = take_stream(fake, call, chunks=1)
    rpc.terminate(
        None,
        ((DETAILS_KEY, status.SerializeToString()),),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        status.message,
    )

    with pytest.raises(TranscribeError) as caught:
        call.result(timeout=WAIT_SECONDS)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "AUDIO_TOO_LONG"
    assert caught.value.metadata == {"max_seconds": "3600"}
    assert caught.value.exit_code == 72


def test_details_are_read_even_when_the_status_message_differs(fake: Fake) -> None:
    """A details trailer whose message differs from the call's status is still parsed for its reason."""
    status = rich_status()
    call = start(fake.client.transcribe, b"abc")
    _, _, rpc = rendezvous(lambda: fake.channel.take_unary_unary(TRANSCRIBE), call)
    rpc.terminate(None, ((DETAILS_KEY, status.SerializeToString()),), grpc.StatusCode.INVALID_ARGUMENT, "bad request")

    with pytest.raises(TranscribeError) as caught:
        call.result(timeout=WAIT_SECONDS)
    assert caught.value.message == "bad request"
    assert caught.value.reason == "INVALID_TEMPERATURE"


def test_error_without_details_still_maps(fake: Fake) -> None:
    """A plain status (no details trailer) keeps its code and message with an empty reason."""
    call = start(fake.client.list_models)
    _, _, rpc = rendezvous(lambda: fake.channel.take_unary_unary(LIST_MODELS), call)
    rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "connection refused")

    with pytest.raises(TranscribeError) as caught:
        call.result(timeout=WAIT_SECONDS)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == ""
    assert caught.value.field_violations == []
    assert str(caught.value) == "UNAVAILABLE: connection refused"


def test_injected_channel_is_not_closed(fake: Fake) -> None:
    """close() leaves a channel that was passed in open for its owner."""
    with TranscribeClient(channel=as_channel(fake.recorder)):
        pass
    assert not fake.recorder.closed


def test_service_config_enables_retries_for_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel is created with a service config that retries the unary methods on UNAVAILABLE."""
    created: list[tuple[str, list[tuple[str, Any]]]] = []

    def insecure_channel(target: str, options: list[tuple[str, Any]]) -> Any:
        created.append((target, options))
        return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())

    monkeypatch.setattr(grpc, "insecure_channel", insecure_channel)
    TranscribeClient("transcribe.example:443", max_message_bytes=8 << 20).close()

    [(target, options)] = created
    assert target == "transcribe.example:443"
    settings = dict(options)
    assert settings["grpc.enable_retries"] == 1
    assert settings["grpc.max_send_message_length"] == 8 << 20
    assert settings["grpc.max_receive_message_length"] == 8 << 20
    assert settings["grpc.keepalive_time_ms"] >= 30_000
    config = json.loads(settings["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method_config] = config["methodConfig"]
    assert {(name["service"], name["method"]) for name in method_config["name"]} == {
        ("transcribe.v1.TranscribeService", "Transcribe"),
        ("transcribe.v1.TranscribeService", "ListModels"),
        *(
            ("google.longrunning.Operations", method)
            for method in ("GetOperation", "ListOperations", "WaitOperation", "CancelOperation", "DeleteOperation")
        ),
    }
    assert method_config["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.2s",
        "maxBackoff": "5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_address_list_becomes_an_ipv4_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of IPv4 addresses becomes one ipv4: target that round_robin balances over."""
    targets: list[str] = []

    def insecure_channel(target: str, options: list[tuple[str, Any]]) -> Any:
        targets.append(target)
        return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())

    monkeypatch.setattr(grpc, "insecure_channel", insecure_channel)
    TranscribeClient(["127.0.0.1:1", "127.0.0.1:2"]).close()
    TranscribeClient("dns:///transcribe.internal:50051").close()

    assert targets == ["ipv4:127.0.0.1:1,127.0.0.1:2", "dns:///transcribe.internal:50051"]
    with pytest.raises(ValueError, match="IP literal"):
        TranscribeClient(["transcribe.internal:50051", "127.0.0.1:2"])


def test_certificates_select_a_secure_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS material builds SSL credentials and a secure channel with the same options."""
    seen: dict[str, Any] = {}

    def ssl_channel_credentials(**kwargs: Any) -> str:
        seen["credentials"] = kwargs
        return "creds"

    def secure_channel(target: str, credentials: Any, options: list[tuple[str, Any]]) -> Any:
        seen["channel"] = (target, credentials)
        return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())

    monkeypatch.setattr(grpc, "ssl_channel_credentials", ssl_channel_credentials)
    monkeypatch.setattr(grpc, "secure_channel", secure_channel)
    TranscribeClient("host:443", root_certificates=b"CA", certificate_chain=b"CERT", private_key=b"KEY").close()

    assert seen["credentials"] == {
        "root_certificates": b"CA",
        "private_key": b"KEY",
        "certificate_chain": b"CERT",
    }
    assert seen["channel"] == ("host:443", "creds")
    with pytest.raises(ValueError, match="together"):
        TranscribeClient("host:443", certificate_chain=b"CERT")

"""The OpenAI-compatible backend end to end: gRPC server, the real openai SDK, a loopback API server."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from service.domain import BackendKind
from tests.conftest import DATA, RunningServer, StartServer, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.helpers import error_details, stream_of
from transcribe.v1 import transcribe_service_pb2 as pb

OPENAI = pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI)


@pytest.fixture
def api(fake_openai: FakeOpenAIServer) -> FakeOpenAIServer:
    """The loopback API, reset for each test."""
    fake_openai.clear_requests()
    fake_openai.clear_faults()
    fake_openai.set_default_fault(None)
    fake_openai.transcript = "hello from the fake api. second sentence here."
    return fake_openai


async def api_server(start_server: StartServer, api: FakeOpenAIServer, **backend: object) -> RunningServer:
    """A server whose API backend talks to the loopback API."""
    return await start_server(
        backends={BackendKind.OPENAI: openai_backend_for(api, **backend)},
        default_backend="openai",
        openai_api_key="test-key",
    )


async def test_sends_the_file_and_model_and_maps_the_text(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """The API receives the default model, a file name with the detected extension, and the exact bytes."""
    server = await api_server(start_server, api)
    data = (DATA / "speech_en.mp3").read_bytes()
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=data, config=pb.TranscriptionConfig(language_code="en-US", prompt="fox")),
        timeout=30,
    )
    (received,) = api.requests
    assert received.path == "/v1/audio/transcriptions"
    assert received.form["model"] == "gpt-4o-mini-transcribe"
    assert received.form["language"] == "en"
    assert received.form["prompt"] == "fox"
    assert (received.file_name or "").endswith(".mp3")
    assert received.file_bytes == data
    assert received.headers["authorization"] == "Bearer test-key"
    transcript = response.transcript
    assert transcript.text == "hello from the fake api. second sentence here."
    assert transcript.backend == pb.BACKEND_OPENAI
    assert transcript.model == "gpt-4o-mini-transcribe"
    assert transcript.audio_duration.ToTimedelta().total_seconds() > 1


async def test_whisper_model_segments_and_words(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """A Whisper model's verbose answer becomes segments with words and a language code."""
    server = await api_server(start_server, api)
    config = pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI, model="whisper-1", enable_word_time_offsets=True)
    data = (DATA / "speech_en.wav").read_bytes()
    response = await server.stub.TranscribeStream(stream_of(config, data), timeout=30)
    (received,) = api.requests
    assert received.form["response_format"] == "verbose_json"
    assert set(received.timestamp_granularities) == {"word", "segment"}
    transcript = response.transcript
    assert transcript.language_code == "en"
    assert [s.text.strip() for s in transcript.segments] == [
        "hello from the fake api.",
        "second sentence here.",
    ]
    words = [w.word for s in transcript.segments for w in s.words]
    assert words == ["hello", "from", "the", "fake", "api", "second", "sentence", "here"]
    assert transcript.segments[1].start_offset.ToTimedelta().total_seconds() == pytest.approx(2.5)


async def test_formats_the_api_does_not_take_are_sent_as_flac(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """Raw ADTS AAC and headerless PCM reach the API as files it accepts; derived files are removed."""
    server = await api_server(start_server, api)
    await server.stub.Transcribe(pb.TranscribeRequest(content=(DATA / "speech_en.aac").read_bytes()), timeout=30)
    pcm = pb.TranscriptionConfig(
        explicit_decoding_config=pb.ExplicitDecodingConfig(
            encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=1
        )
    )
    await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en_s16le_16k_mono.pcm").read_bytes(), config=pcm),
        timeout=30,
    )
    names = [r.file_name or "" for r in api.requests]
    assert names[0].endswith(".flac")
    assert names[1].endswith(".wav")
    assert server.store.files() == []


async def test_translation_uses_the_translation_endpoint(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """Task translate goes to /audio/translations with whisper-1."""
    server = await api_server(start_server, api)
    config = pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI, task=pb.TASK_TRANSLATE)
    await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=config), timeout=30
    )
    (received,) = api.requests
    assert received.path == "/v1/audio/translations"
    assert received.form["model"] == "whisper-1"


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        (Fault.rate_limited(retry_after=7), grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"),
        (Fault.server_error(500), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (Fault.server_error(503), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (Fault.connection_reset(), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (Fault.bad_json(), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (Fault.slow(3.0), grpc.StatusCode.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT"),
        (
            Fault(status=400, message="Invalid file format.", error_code="invalid_value"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "UPSTREAM_REJECTED_REQUEST",
        ),
        (Fault(status=401), grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_AUTH_FAILED"),
        (Fault(status=404), grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    ],
)
async def test_upstream_failures_map_to_status_codes(
    fault: Fault, code: grpc.StatusCode, reason: str, start_server: StartServer, api: FakeOpenAIServer
) -> None:
    """Every upstream failure becomes its documented status with a stable reason."""
    server = await api_server(start_server, api, timeout_seconds=1.0)
    api.enqueue(fault)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Transcribe(
            pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI), timeout=30
        )
    assert caught.value.code() == code
    info, _ = error_details(caught.value)
    assert info.reason == reason
    assert "127.0.0.1" not in (caught.value.details() or "")
    if reason == "UPSTREAM_RATE_LIMITED":
        raw = dict(caught.value.trailing_metadata() or ())["grpc-status-details-bin"]
        retry = [d for d in status_pb2.Status.FromString(raw).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1
        info_retry = error_details_pb2.RetryInfo()
        retry[0].Unpack(info_retry)
        assert info_retry.retry_delay.seconds == 7


async def test_transient_failures_are_retried(start_server: StartServer, api: FakeOpenAIServer) -> None:
    """With retries configured, a 503 then a 429 are retried and the call succeeds."""
    server = await api_server(start_server, api, max_retries=2)
    api.enqueue(Fault.server_error(503), Fault.rate_limited(retry_after=0))
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI), timeout=30
    )
    assert response.transcript.text
    assert len(api.requests) == 3


async def test_api_backend_without_key_is_failed_precondition(start_server: StartServer) -> None:
    """Asking for the API backend on a server without a key is FAILED_PRECONDITION."""
    server = await start_server()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Transcribe(
            pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes(), config=OPENAI), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = error_details(caught.value)
    assert info.reason == "BACKEND_NOT_CONFIGURED"
    assert info.metadata["backend"] == "openai"

"""End to end through a real gRPC server and the real tiny.en model on spoken fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.backends.local import LocalBackend
from service.domain import BackendKind
from tests.conftest import DATA, Fixture, StartServer
from tests.helpers import assert_has_words, stream_of
from transcribe.v1 import transcribe_service_pb2 as pb

ENGLISH_FORMATS = [
    "speech_en.wav",
    "speech_en_f32.wav",
    "speech_en.mp3",
    "speech_en.ogg",
    "speech_en.webm",
    "speech_en.m4a",
    "speech_en.aac",
    "speech_en.flac",
    "speech_en_stereo_44k.wav",
]


@pytest.mark.parametrize("name", ENGLISH_FORMATS)
async def test_unary_transcribes_every_container(
    name: str, start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Each supported container, detected from its bytes, yields the spoken words."""
    server = await start_server()
    fixture = spoken.get(name) or spoken["speech_en.wav"]
    response = await server.stub.Transcribe(pb.TranscribeRequest(content=(DATA / name).read_bytes()), timeout=120)
    transcript = response.transcript
    assert_has_words(transcript.text, fixture.expected_words)
    assert transcript.backend == pb.BACKEND_LOCAL
    assert transcript.model == "tiny.en"
    assert transcript.language_code == "en"
    assert transcript.audio_duration.ToTimedelta().total_seconds() == pytest.approx(fixture.duration, abs=0.2)
    assert transcript.segments, "local transcripts carry segments"


async def test_stream_matches_unary(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """Uploading in small chunks gives the same transcript as one message."""
    server = await start_server()
    data = (DATA / "speech_en.mp3").read_bytes()
    unary = await server.stub.Transcribe(pb.TranscribeRequest(content=data), timeout=120)
    streamed = await server.stub.TranscribeStream(stream_of(pb.TranscriptionConfig(), data, chunk=1000), timeout=120)
    assert streamed.transcript.text == unary.transcript.text
    assert_has_words(streamed.transcript.text, spoken["speech_en.mp3"].expected_words)


async def test_headerless_pcm_with_explicit_decoding(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """Headerless LINEAR16 is transcribed when the config describes it."""
    server = await start_server()
    config = pb.TranscriptionConfig(
        explicit_decoding_config=pb.ExplicitDecodingConfig(
            encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=1
        )
    )
    data = (DATA / "speech_en_s16le_16k_mono.pcm").read_bytes()
    response = await server.stub.TranscribeStream(stream_of(config, data), timeout=120)
    assert_has_words(response.transcript.text, spoken["speech_en.wav"].expected_words)
    assert response.transcript.audio_duration.ToTimedelta().total_seconds() == pytest.approx(
        len(data) / 32000, abs=0.01
    )


async def test_word_offsets_only_when_asked(start_server: StartServer) -> None:
    """Words come with ordered, in-range offsets and probabilities only when enabled."""
    server = await start_server()
    data = (DATA / "speech_en.wav").read_bytes()
    plain = await server.stub.Transcribe(pb.TranscribeRequest(content=data), timeout=120)
    assert all(not s.words for s in plain.transcript.segments)
    timed = await server.stub.Transcribe(
        pb.TranscribeRequest(content=data, config=pb.TranscriptionConfig(enable_word_time_offsets=True)),
        timeout=120,
    )
    words = [w for s in timed.transcript.segments for w in s.words]
    assert len(words) >= 8
    starts = [w.start_offset.ToNanoseconds() for w in words]
    assert starts == sorted(starts)
    duration = timed.transcript.audio_duration.ToNanoseconds()
    for word in words:
        assert 0 <= word.start_offset.ToNanoseconds() <= word.end_offset.ToNanoseconds() <= duration + 10**9
        assert 0.0 < word.probability <= 1.0


async def test_list_models_and_health(start_server: StartServer) -> None:
    """ListModels shows the bundled models and which is loaded; health says SERVING."""
    server = await start_server()
    models = (await server.stub.ListModels(pb.ListModelsRequest(), timeout=10)).models
    by_name = {m.name: m for m in models}
    assert by_name["tiny.en"].loaded
    assert by_name["tiny.en"].is_default
    assert not by_name["tiny.en"].multilingual
    assert by_name["base"].multilingual
    assert by_name["tiny.en"].backend == pb.BACKEND_LOCAL
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "transcribe.v1.TranscribeService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reference_engine_transcribes_with_word_offsets(
    start_server: StartServer, reference_backend: LocalBackend[Any], spoken: dict[str, Fixture]
) -> None:
    """openai-whisper, on the checkpoint converted from the bundled model, gives the words and their offsets."""
    server = await start_server(backends={BackendKind.LOCAL: reference_backend})
    config = pb.TranscriptionConfig(enable_word_time_offsets=True)
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / "speech_en.flac").read_bytes(), config=config), timeout=300
    )
    transcript = response.transcript
    assert_has_words(transcript.text, spoken["speech_en.wav"].expected_words)
    words = [w for s in transcript.segments for w in s.words]
    assert len(words) >= 8
    assert [w.start_offset.ToNanoseconds() for w in words] == sorted(w.start_offset.ToNanoseconds() for w in words)
    models = (await server.stub.ListModels(pb.ListModelsRequest(), timeout=10)).models
    assert {m.engine for m in models} == {"openai-whisper"}

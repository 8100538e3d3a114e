"""Every bad input gets its documented status, reason and details, and leaves nothing on disk."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import grpc
import pytest

from service.domain import AudioFile, BackendKind, ModelDescription, Transcript, TranscriptionOptions
from tests.conftest import DATA, StartServer
from tests.helpers import error_details, stream_of
from transcribe.v1 import transcribe_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def call_error(call: object) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "AUDIO_EMPTY"),
        (os.urandom(4096), "AUDIO_UNDECODABLE"),
        ((DATA / "not_audio.txt").read_bytes(), "AUDIO_UNDECODABLE"),
        ((DATA / "image.png").read_bytes(), "AUDIO_UNDECODABLE"),
        ((DATA / "video_only.mp4").read_bytes(), "AUDIO_UNDECODABLE"),
        ((DATA / "truncated.wav").read_bytes(), "AUDIO_TRUNCATED"),
        ((DATA / "truncated.mp3").read_bytes(), "AUDIO_TRUNCATED"),
    ],
    ids=["empty", "random", "text", "png", "video-only", "truncated-wav", "truncated-mp3"],
)
async def test_bad_audio_is_invalid_argument(content: bytes, reason: str, start_server: StartServer) -> None:
    """Bytes that are not complete audio are INVALID_ARGUMENT with a reason saying why."""
    server = await start_server()
    error = await call_error(server.stub.Transcribe(pb.TranscribeRequest(content=content), timeout=30))
    assert error.code() == INVALID
    info, _ = error_details(error)
    assert info.reason == reason


async def test_hours_of_silence_in_a_small_file_is_too_long(start_server: StartServer) -> None:
    """A small file holding more audio than the duration limit is refused without transcribing it."""
    server = await start_server(max_audio_seconds=600)
    silence = next(DATA.glob("silence_*.flac"))
    assert silence.stat().st_size < 1024 * 1024
    error = await call_error(server.stub.Transcribe(pb.TranscribeRequest(content=silence.read_bytes()), timeout=60))
    assert error.code() == INVALID
    info, _ = error_details(error)
    assert info.reason == "AUDIO_TOO_LONG"
    assert info.metadata["limit_seconds"] == "600"


async def test_unary_over_the_size_limit_is_resource_exhausted(start_server: StartServer) -> None:
    """A unary upload over the byte limit (within the message limit) is RESOURCE_EXHAUSTED with the limit."""
    content = (DATA / "speech_en.wav").read_bytes()
    limit = len(content) - 1000
    server = await start_server(max_audio_bytes=limit)
    error = await call_error(server.stub.Transcribe(pb.TranscribeRequest(content=content), timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, _ = error_details(error)
    assert info.reason == "AUDIO_TOO_LARGE"
    assert info.metadata["limit_bytes"] == str(limit)


async def test_stream_over_the_size_limit_is_resource_exhausted(start_server: StartServer) -> None:
    """A stream past the byte limit is refused with AUDIO_TOO_LARGE, the rest of what the client sends read and
    dropped. The client here sends 4 MiB, within the lingering read's budget, so its status always arrives: a
    sender that goes on past that budget is cut off while it writes, and grpcio's asyncio client may then report
    INTERNAL instead (grpc/grpc#36066; test_bad_input covers that bound)."""
    server = await start_server(max_audio_bytes=64 * 1024)

    async def chunks() -> AsyncIterator[pb.TranscribeStreamRequest]:
        yield pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())
        for _ in range(64):
            yield pb.TranscribeStreamRequest(audio_content=b"\0" * 65536)

    error = await call_error(server.stub.TranscribeStream(chunks(), timeout=60))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, _ = error_details(error)
    assert info.reason == "AUDIO_TOO_LARGE"


async def test_grpc_message_limit_applies_to_unary(start_server: StartServer) -> None:
    """A unary message larger than the server's maximum message size is refused by gRPC itself."""
    server = await start_server(max_audio_bytes=8192)
    error = await call_error(server.stub.Transcribe(pb.TranscribeRequest(content=b"\0" * 200_000), timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], "STREAM_OUT_OF_ORDER"),
        ([pb.TranscribeStreamRequest(audio_content=b"abc")], "STREAM_OUT_OF_ORDER"),
        (
            [
                pb.TranscribeStreamRequest(config=pb.TranscriptionConfig()),
                pb.TranscribeStreamRequest(config=pb.TranscriptionConfig()),
            ],
            "STREAM_OUT_OF_ORDER",
        ),
        (
            [
                pb.TranscribeStreamRequest(config=pb.TranscriptionConfig()),
                pb.TranscribeStreamRequest(audio_content=(DATA / "speech_en.wav").read_bytes()[:1000]),
                pb.TranscribeStreamRequest(config=pb.TranscriptionConfig()),
            ],
            "STREAM_OUT_OF_ORDER",
        ),
        ([pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())], "AUDIO_EMPTY"),
    ],
    ids=["nothing", "audio-first", "config-twice", "config-after-audio", "config-only"],
)
async def test_stream_order_is_enforced(
    messages: list[pb.TranscribeStreamRequest], reason: str, start_server: StartServer
) -> None:
    """Config must come first and only once, and some audio must follow it."""
    server = await start_server()

    async def requests() -> AsyncIterator[pb.TranscribeStreamRequest]:
        for message in messages:
            yield message

    error = await call_error(server.stub.TranscribeStream(requests(), timeout=30))
    assert error.code() == INVALID
    info, violations = error_details(error)
    assert info.reason == reason
    if reason == "STREAM_OUT_OF_ORDER":
        assert [field for field, _ in violations] == ["config"]


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        (pb.TranscriptionConfig(temperature=2.0), ["config.temperature"]),
        (pb.TranscriptionConfig(language_code="not a tag"), ["config.language_code"]),
        (pb.TranscriptionConfig(language_code="xx"), ["config.language_code"]),
        (pb.TranscriptionConfig(language_code="es"), ["config.language_code"]),
        (pb.TranscriptionConfig(task=pb.TASK_TRANSLATE), ["config.task"]),
        (pb.TranscriptionConfig(backend=99), ["config.backend"]),  # type: ignore[arg-type]
        (
            pb.TranscriptionConfig(
                explicit_decoding_config=pb.ExplicitDecodingConfig(sample_rate_hertz=0, audio_channel_count=0)
            ),
            ["config.explicit_decoding_config.encoding"],
        ),
        (
            pb.TranscriptionConfig(
                temperature=-1,
                explicit_decoding_config=pb.ExplicitDecodingConfig(
                    encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=100, audio_channel_count=9
                ),
            ),
            [
                "config.temperature",
                "config.explicit_decoding_config.sample_rate_hertz",
                "config.explicit_decoding_config.audio_channel_count",
            ],
        ),
    ],
    ids=[
        "temperature",
        "tag",
        "unknown-language",
        "english-only",
        "translate-english-only",
        "backend",
        "encoding",
        "many",
    ],
)
async def test_bad_config_lists_field_violations(
    config: pb.TranscriptionConfig, fields: list[str], start_server: StartServer
) -> None:
    """A bad config is INVALID_ARGUMENT with a BadRequest naming each bad field, before any audio is read."""
    server = await start_server()
    error = await call_error(
        server.stub.TranscribeStream(stream_of(config, (DATA / "speech_en.wav").read_bytes()), timeout=30)
    )
    assert error.code() == INVALID
    info, violations = error_details(error)
    assert info.reason == "INVALID_CONFIG"
    assert [field for field, _ in violations] == fields


async def test_unknown_model_is_not_found_and_lists_models(start_server: StartServer) -> None:
    """An unknown model is NOT_FOUND, and the details list what the server has."""
    server = await start_server()
    config = pb.TranscriptionConfig(model="large-v9")
    error = await call_error(server.stub.Transcribe(pb.TranscribeRequest(content=b"x", config=config), timeout=30))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    info, _ = error_details(error)
    assert info.reason == "MODEL_NOT_FOUND"
    assert info.metadata["model"] == "large-v9"
    assert {"tiny.en", "base"} <= set(info.metadata["available"].split(", "))


async def test_pcm_with_a_partial_frame_is_truncated(start_server: StartServer) -> None:
    """Headerless stereo PCM whose length is not a whole number of frames is INVALID_ARGUMENT."""
    server = await start_server()
    config = pb.TranscriptionConfig(
        explicit_decoding_config=pb.ExplicitDecodingConfig(
            encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=2
        )
    )
    error = await call_error(
        server.stub.Transcribe(pb.TranscribeRequest(content=b"\0" * 4003, config=config), timeout=30)
    )
    assert error.code() == INVALID
    assert error_details(error)[0].reason == "AUDIO_TRUNCATED"


class ExplodingBackend:
    """A backend whose failure message must never reach a caller."""

    kind = BackendKind.LOCAL
    workers = 1
    wants_whisper_input = False

    async def start(self) -> None:
        """Nothing to start."""

    def check(self, options: TranscriptionOptions) -> None:
        """Accepts everything."""

    async def transcribe(
        self, audio: AudioFile, options: TranscriptionOptions, deadline: float | None = None
    ) -> Transcript:
        """Fails like a bug would."""
        raise RuntimeError(f"secret failure reading {audio.path}")

    def models(self) -> list[ModelDescription]:
        """No models."""
        return []

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_unexpected_failure_is_a_generic_internal(start_server: StartServer) -> None:
    """A bug becomes INTERNAL with a generic message: no exception text, path or trace reaches the caller."""
    server = await start_server(backends={BackendKind.LOCAL: ExplodingBackend()})
    error = await call_error(
        server.stub.Transcribe(pb.TranscribeRequest(content=(DATA / "speech_en.wav").read_bytes()), timeout=30)
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (error.details() or "")
    assert "/" not in (error.details() or "")
    assert error_details(error)[0].reason == "INTERNAL"

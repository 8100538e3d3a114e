"""Property tests of TranscribeStream: any sequence of messages gets a documented status and leaves no file.

Hypothesis drives a plain synchronous test, so the server cannot live on pytest-asyncio's loop (that loop only runs
while an async test or fixture is running). Instead one server runs for the whole module on its own event loop in a
background thread, and each example calls it over a synchronous gRPC channel. Its only backend is the API backend
pointed at the loopback OpenAI server, so an accepted upload costs milliseconds, not a model run.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from service.domain import BackendKind
from service.faces.grpc.app import create_server
from service.settings import Settings
from service.wiring import App, build_app
from tests.conftest import DATA, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

T = TypeVar("T")
Code = grpc.StatusCode
INVALID = Code.INVALID_ARGUMENT

# Every (code, reason) pair of the README's error table, and OK.
DOCUMENTED: frozenset[tuple[Code, str]] = frozenset(
    {
        (Code.OK, ""),
        (INVALID, "INVALID_CONFIG"),
        (INVALID, "STREAM_OUT_OF_ORDER"),
        (INVALID, "AUDIO_EMPTY"),
        (INVALID, "AUDIO_UNDECODABLE"),
        (INVALID, "AUDIO_TRUNCATED"),
        (INVALID, "AUDIO_TOO_LONG"),
        (INVALID, "UPSTREAM_REJECTED_REQUEST"),
        (Code.RESOURCE_EXHAUSTED, "AUDIO_TOO_LARGE"),
        (Code.RESOURCE_EXHAUSTED, "OVERLOADED"),
        (Code.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"),
        (Code.NOT_FOUND, "MODEL_NOT_FOUND"),
        (Code.FAILED_PRECONDITION, "BACKEND_NOT_CONFIGURED"),
        (Code.FAILED_PRECONDITION, "UPSTREAM_AUTH_FAILED"),
        (Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (Code.UNAVAILABLE, "BACKEND_NOT_READY"),
        (Code.DEADLINE_EXCEEDED, "STREAM_IDLE_TIMEOUT"),
        (Code.DEADLINE_EXCEEDED, "DEADLINE_TOO_SHORT"),
        (Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT"),
    }
)
# What any audio that is not a whole fixture may get: accepted, or refused for what is wrong with it.
ANY_AUDIO_OUTCOME = frozenset(
    {
        (Code.OK, ""),
        (INVALID, "AUDIO_EMPTY"),
        (INVALID, "AUDIO_UNDECODABLE"),
        (INVALID, "AUDIO_TRUNCATED"),
    }
)
FILES = ("speech_en.wav", "speech_en.mp3", "speech_en.ogg", "speech_en.flac", "speech_en.webm")
CONTENT = {name: (DATA / name).read_bytes() for name in FILES}

ConfigKind = Literal["default", "openai", "pcm", "local", "bad-temperature"]
CONFIGS: dict[ConfigKind, pb.TranscriptionConfig] = {
    "default": pb.TranscriptionConfig(),
    "openai": pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI, language_code="en"),
    "pcm": pb.TranscriptionConfig(
        explicit_decoding_config=pb.ExplicitDecodingConfig(
            encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=1
        )
    ),
    "local": pb.TranscriptionConfig(backend=pb.BACKEND_LOCAL),
    "bad-temperature": pb.TranscriptionConfig(temperature=3.5),
}


@dataclass(frozen=True)
class Message:
    """One stream message: config, audio bytes (possibly empty), or a message with no field set."""

    kind: Literal["config", "audio", "nothing"]
    config: ConfigKind = "default"
    audio: bytes = b""

    def proto(self) -> pb.TranscribeStreamRequest:
        """The wire message."""
        if self.kind == "config":
            return pb.TranscribeStreamRequest(config=CONFIGS[self.config])
        if self.kind == "audio":
            return pb.TranscribeStreamRequest(audio_content=self.audio)
        return pb.TranscribeStreamRequest()

    def __repr__(self) -> str:
        if self.kind == "config":
            return f"config({self.config})"
        if self.kind == "audio":
            return f"audio({len(self.audio)} bytes, {self.audio[:8]!r})"
        return "nothing"


def expected(messages: Sequence[Message]) -> frozenset[tuple[Code, str]]:
    """Every outcome the documented stream rules allow; messages with no field set are ignored."""
    items = [m for m in messages if m.kind != "nothing"]
    if not items or items[0].kind != "config":
        return frozenset({(INVALID, "STREAM_OUT_OF_ORDER")})
    first = items[0].config
    if first == "bad-temperature":
        return frozenset({(INVALID, "INVALID_CONFIG")})
    if first == "local":
        return frozenset({(Code.FAILED_PRECONDITION, "BACKEND_NOT_CONFIGURED")})
    if any(m.kind == "config" for m in items[1:]):
        return frozenset({(INVALID, "STREAM_OUT_OF_ORDER")})
    audio = b"".join(m.audio for m in items[1:])
    if not audio:
        return frozenset({(INVALID, "AUDIO_EMPTY")})
    if first == "pcm":
        # Any bytes are 16-bit mono PCM, as long as they are whole samples.
        return frozenset({(Code.OK, "") if len(audio) % 2 == 0 else (INVALID, "AUDIO_TRUNCATED")})
    if audio in CONTENT.values():
        return frozenset({(Code.OK, "")})
    return ANY_AUDIO_OUTCOME


# -- strategies -------------------------------------------------------------------------------------------------

configs = st.sampled_from(list(CONFIGS)).map(lambda kind: Message("config", config=kind))
nothing = st.just(Message("nothing"))
empty_audio = st.just(Message("audio"))


@st.composite
def file_slices(draw: st.DrawFn) -> Message:
    """A slice of a real audio file."""
    data = CONTENT[draw(st.sampled_from(FILES))]
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, min(len(data), start + 64 * 1024)))
    return Message("audio", audio=data[start:end])


audio_chunks = st.one_of(
    st.binary(min_size=1, max_size=4096).map(lambda data: Message("audio", audio=data)),
    file_slices(),
    empty_audio,
)
arbitrary = st.lists(st.one_of(configs, audio_chunks, nothing), max_size=12)


@st.composite
def well_formed(draw: st.DrawFn) -> list[Message]:
    """Config then a whole real file in random chunks, with empty messages sprinkled after the config."""
    data = CONTENT[draw(st.sampled_from(FILES))]
    cuts = sorted(draw(st.lists(st.integers(1, len(data) - 1), max_size=8, unique=True)))
    bounds = [0, *cuts, len(data)]
    messages = [Message("audio", audio=data[a:b]) for a, b in itertools.pairwise(bounds)]
    for _ in range(draw(st.integers(0, 3))):
        messages.insert(draw(st.integers(0, len(messages))), draw(st.one_of(nothing, empty_audio)))
    leading = draw(st.lists(nothing, max_size=2))
    return [*leading, Message("config", config=draw(st.sampled_from(["default", "openai"]))), *messages]


@st.composite
def misordered(draw: st.DrawFn) -> list[Message]:
    """A well-formed upload with one extra config dropped somewhere after the first."""
    messages = draw(well_formed())
    first = next(i for i, m in enumerate(messages) if m.kind == "config")
    messages.insert(draw(st.integers(first + 1, len(messages))), draw(configs))
    return messages


@st.composite
def config_then_audio(draw: st.DrawFn) -> list[Message]:
    """A usable config, then random audio and empty messages: the audio checks decide."""
    config = Message("config", config=draw(st.sampled_from(["default", "openai", "pcm"])))
    return [config, *draw(st.lists(st.one_of(audio_chunks, nothing), max_size=8))]


# Half the streams are orderly, so the audio checks and the happy path get as many examples as the order rules.
streams = st.one_of(arbitrary, misordered(), config_then_audio(), well_formed())


# -- the server ---------------------------------------------------------------------------------------------------


class ThreadedServer:
    """A real server on its own event loop in a background thread, for synchronous clients."""

    def __init__(self, settings: Settings, fake: FakeOpenAIServer) -> None:
        self._settings = settings
        self._fake = fake
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="property-server", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.app: App | None = None
        self.target = ""

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    async def _start(self) -> None:
        self.app = build_app(self._settings, {BackendKind.OPENAI: openai_backend_for(self._fake)})
        self.app.store.open()
        self._server, port, _ = create_server(
            self._settings,
            self.app.transcriber,
            self.app.live,
            self.app.recorder,
            jobs=self.app.jobs,
            fetcher=self.app.fetcher,
        )
        await self._server.start()
        await self.app.transcriber.start()
        self.target = f"127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self._server is not None
        assert self.app is not None
        await self._server.stop(None)
        await self.app.transcriber.aclose()
        leftovers = self.app.store.files()
        self.app.store.close()
        assert leftovers == [], f"upload files left behind: {leftovers}"

    def files(self) -> list[Path]:
        """Upload files on disk once the server has finished every call it started."""
        assert self.app is not None
        deadline = time.monotonic() + 10
        while self.app.transcriber.upload_gate.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.app.transcriber.upload_gate.in_flight == 0, "a call is still running 10 s after its status"
        return self.app.store.files()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAIServer) -> Iterator[ThreadedServer]:
    """One API-backed server for every example."""
    fake_openai.clear_faults()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        temp_dir=tmp_path_factory.mktemp("property-uploads"),
        default_backend="openai",
        openai_api_key=SecretStr("test-key"),
    )
    with ThreadedServer(settings, fake_openai) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: ThreadedServer) -> Iterator[pb_grpc.TranscribeServiceStub]:
    """A synchronous stub on one channel for every example."""
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.TranscribeServiceStub(channel)


def outcome(stub: pb_grpc.TranscribeServiceStub, messages: Sequence[Message]) -> tuple[Code, str]:
    """The status code and ErrorInfo reason of one stream call ("" for OK)."""
    failure: grpc.Call | None = None
    try:
        stub.TranscribeStream(iter([m.proto() for m in messages]), timeout=30)
    except grpc.RpcError as error:
        failure = error if isinstance(error, grpc.Call) else None
        if failure is None:
            raise
    if failure is None:
        return Code.OK, ""
    status = rpc_status.from_call(failure)
    reasons = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert len(reasons) == 1, f"{failure.code()} carries {len(reasons)} ErrorInfo details"
    return failure.code(), reasons[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=streams)
def test_any_stream_gets_a_documented_status_and_leaves_no_file(
    messages: list[Message], server: ThreadedServer, stub: pb_grpc.TranscribeServiceStub
) -> None:
    """Any order of config, audio and empty messages gets a documented code (never INTERNAL) and leaves no file."""
    got = outcome(stub, messages)
    event(f"{got[0].name} {got[1]}".strip())
    assert got[0] not in (Code.INTERNAL, Code.UNKNOWN), got
    assert got in DOCUMENTED, got
    assert got in expected(messages), (got, sorted(expected(messages), key=str))
    assert server.files() == []

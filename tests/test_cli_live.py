"""`transcribe-cli live` without a server: audio decoding and pacing, rendering, options and exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import grpc
import pytest

from tests.conftest import DATA
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client import cli
from transcribe_client.errors import TranscribeError

PCM = DATA / "speech_en_s16le_16k_mono.pcm"
CLEAR = "\r\x1b[2K"


def result(text: str, *, final: bool, start_ms: int = 0, end_ms: int = 0) -> pb.LiveResult:
    live = pb.LiveResult(text=text, is_final=final, stability=0.0 if final else 0.8)
    live.start_offset.FromMilliseconds(start_ms)
    live.end_offset.FromMilliseconds(end_ms)
    return live


def event(kind: pb.VoiceActivityEventType.ValueType, offset_ms: int) -> pb.TranscribeLiveResponse:
    activity = pb.VoiceActivityEvent(type=kind)
    activity.offset.FromMilliseconds(offset_ms)
    return pb.TranscribeLiveResponse(voice_activity=activity)


SCRIPT = [
    pb.TranscribeLiveResponse(backend=pb.BACKEND_LOCAL, model="tiny.en"),
    event(pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN, 480),
    pb.TranscribeLiveResponse(results=[result(" The quick", final=False, start_ms=500, end_ms=1200)]),
    pb.TranscribeLiveResponse(results=[result(" The quick brown fox", final=False, start_ms=500, end_ms=2000)]),
    pb.TranscribeLiveResponse(
        results=[
            result(" The quick brown fox jumps.", final=True, start_ms=500, end_ms=2600),
            result(" Over", final=False, start_ms=3000, end_ms=3400),
        ]
    ),
    event(pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_END, 4100),
    pb.TranscribeLiveResponse(results=[result(" Over the lazy dog.", final=True, start_ms=3000, end_ms=4000)]),
]
NO_EVENTS = [response for response in SCRIPT if not response.HasField("voice_activity")]


class FakeLiveClient:
    """Stands in for TranscribeClient: takes every chunk, then plays SCRIPT (or raises `error` after it)."""

    instances: ClassVar[list[FakeLiveClient]] = []
    script: ClassVar[list[pb.TranscribeLiveResponse]] = SCRIPT
    error: ClassVar[TranscribeError | None] = None

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self.target = target
        self.kwargs = kwargs
        self.chunks: list[bytes] = []
        self.live_kwargs: dict[str, Any] = {}
        FakeLiveClient.instances.append(self)

    def __enter__(self) -> FakeLiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def live(self, chunks: Iterable[bytes], **kwargs: Any) -> Iterator[pb.TranscribeLiveResponse]:
        self.live_kwargs = kwargs
        self.chunks = list(chunks)
        yield from FakeLiveClient.script
        if FakeLiveClient.error is not None:
            raise FakeLiveClient.error


class TtyOutput(io.StringIO):
    """Standard output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeLiveClient]:
    """Replace the CLI's TranscribeClient with FakeLiveClient."""
    FakeLiveClient.instances = []
    FakeLiveClient.script = SCRIPT
    FakeLiveClient.error = None
    monkeypatch.setattr(cli, "TranscribeClient", FakeLiveClient)
    return FakeLiveClient


@pytest.fixture
def stdin_pcm(monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """Standard input is a pipe holding the raw PCM fixture."""
    audio = PCM.read_bytes()
    read_end, write_end = os.pipe()

    def write() -> None:
        os.write(write_end, audio)
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    with open(read_end, "rb") as pipe:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(pipe))
        yield audio
    writer.join()


def test_file_is_decoded_to_16k_mono_chunks_of_100ms(
    fake_client: type[FakeLiveClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """`live FILE` decodes any container to 16 kHz mono LINEAR16 sent in 100 ms chunks, with no deadline."""
    assert cli.main(["live", str(DATA / "speech_en.wav"), "--speed", "0"]) == 0
    [client] = fake_client.instances
    assert {len(chunk) for chunk in client.chunks[:-1]} == {3200}
    assert b"".join(client.chunks) == PCM.read_bytes()
    assert client.live_kwargs["sample_rate"] == 16000
    assert client.live_kwargs["channels"] == 1
    assert client.live_kwargs["timeout"] is None
    assert "timeout" not in client.kwargs
    assert capsys.readouterr().out == "The quick brown fox jumps.\nOver the lazy dog.\n"


def test_compressed_stereo_input_is_downmixed_and_resampled(fake_client: type[FakeLiveClient]) -> None:
    """A 44.1 kHz stereo file and an Ogg/Opus file both arrive as 16 kHz mono of their length."""
    assert cli.main(["live", str(DATA / "speech_en_stereo_44k.wav"), "--speed", "0"]) == 0
    assert cli.main(["live", str(DATA / "speech_en.ogg"), "--speed", "0"]) == 0
    stereo, ogg = fake_client.instances
    assert abs(sum(map(len, stereo.chunks)) / 32000 - 3.77) < 0.05
    assert abs(sum(map(len, ogg.chunks)) / 32000 - len(PCM.read_bytes()) / 32000) < 0.1


def test_not_a_terminal_prints_finals_only_and_asks_for_no_interims(
    fake_client: type[FakeLiveClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped text output holds only final results, so interim results are not even requested."""
    assert cli.main(["live", str(PCM), "--pcm-rate", "16000", "--speed", "0"]) == 0
    assert capsys.readouterr().out == "The quick brown fox jumps.\nOver the lazy dog.\n"
    assert fake_client.instances[0].live_kwargs["interim_results"] is False
    assert cli.main(["live", str(PCM), "--pcm-rate", "16000", "--speed", "0", "--interim"]) == 0
    assert fake_client.instances[1].live_kwargs["interim_results"] is True


def test_terminal_redraws_interims_in_place(
    fake_client: type[FakeLiveClient], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal each interim redraws the current line and each final replaces it with a line of its own."""
    fake_client.script = NO_EVENTS
    out = TtyOutput()
    monkeypatch.setattr("sys.stdout", out)
    assert cli.main(["live", str(DATA / "speech_en.flac"), "--speed", "0"]) == 0
    assert fake_client.instances[0].live_kwargs["interim_results"] is True
    assert out.getvalue() == (
        f"{CLEAR}The quick{CLEAR}The quick brown fox{CLEAR}The quick brown fox jumps.\n{CLEAR}Over{CLEAR}"
        "Over the lazy dog.\n"
    )
    assert capsys.readouterr().err == ""


def test_long_interims_keep_their_end_on_one_line() -> None:
    """An interim wider than the terminal shows its latest words, so redrawing never wraps."""
    out = TtyOutput()
    printer = cli._LivePrinter(out, json_lines=False, terminal=True, columns=lambda: 21)
    printer.show(pb.TranscribeLiveResponse(results=[result("one two three four five six", final=False)]))
    printer.close()
    assert out.getvalue() == f"{CLEAR}…three four five six{CLEAR}"
    assert len("…three four five six") == 20


def test_voice_events_go_to_stderr_around_the_interim(
    fake_client: type[FakeLiveClient], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--vad-events asks for events; in text mode they are lines on stderr and the interim is redrawn after."""
    out = TtyOutput()
    monkeypatch.setattr("sys.stdout", out)
    assert cli.main(["live", str(PCM), "--pcm-rate", "16000", "--speed", "0", "--vad-events"]) == 0
    assert fake_client.instances[0].live_kwargs["voice_activity_events"] is True
    assert capsys.readouterr().err == "[speech began at 0.48 s]\n[speech ended at 4.10 s]\n"
    assert out.getvalue().endswith(f"{CLEAR}Over{CLEAR}Over{CLEAR}Over the lazy dog.\n")


def test_json_prints_one_object_per_response(
    fake_client: type[FakeLiveClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """--format json prints every response as one line: results with offsets in seconds, events, backend, model."""
    argv = ["live", str(PCM), "--pcm-rate", "16000", "--speed", "0", "--format", "json", "--endpoint-ms", "300"]
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(SCRIPT)
    assert lines[0] == {"backend": "local", "model": "tiny.en"}
    assert lines[1] == {"voice_activity": {"type": "speech_begin", "offset": 0.48}}
    assert lines[4]["results"] == [
        {"text": " The quick brown fox jumps.", "is_final": True, "stability": 0.0, "start_offset": 0.5,
         "end_offset": 2.6},
        {"text": " Over", "is_final": False, "stability": 0.8, "start_offset": 3.0, "end_offset": 3.4},
    ]  # fmt: skip
    kwargs = fake_client.instances[0].live_kwargs
    assert kwargs["interim_results"] is True
    assert kwargs["speech_end_timeout"] == 0.3


def test_stdin_is_raw_pcm_sent_as_it_arrives(
    fake_client: type[FakeLiveClient], stdin_pcm: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`live -` reads raw PCM in 100 ms chunks of the declared layout and does not pace it (the source does)."""
    speeds: list[float] = []
    real_paced = cli.paced

    def recording_paced(chunks: Iterator[bytes], **kwargs: Any) -> Iterator[bytes]:
        speeds.append(kwargs["speed"])
        return real_paced(chunks, **kwargs)

    monkeypatch.setattr(cli, "paced", recording_paced)
    argv = ["live", "-", "--pcm-rate", "8000", "--pcm-channels", "2", "--language", "en", "--model", "base"]
    assert cli.main(argv) == 0
    [client] = fake_client.instances
    assert b"".join(client.chunks) == stdin_pcm
    assert {len(chunk) for chunk in client.chunks[:-1]} == {8000 // 10 * 2 * 2}
    assert (client.live_kwargs["sample_rate"], client.live_kwargs["channels"]) == (8000, 2)
    assert (client.live_kwargs["language"], client.live_kwargs["model"]) == ("en", "base")
    assert speeds == [0.0]


def test_files_play_at_real_time_unless_told(
    fake_client: type[FakeLiveClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is paced at 1x by default and at --speed N when given."""
    speeds: list[float] = []

    def recording_paced(chunks: Iterator[bytes], **kwargs: Any) -> Iterator[bytes]:
        speeds.append(kwargs["speed"])
        return iter(())

    monkeypatch.setattr(cli, "paced", recording_paced)
    assert cli.main(["live", str(PCM), "--pcm-rate", "16000"]) == 0
    assert cli.main(["live", str(DATA / "speech_en.mp3"), "--speed", "4"]) == 0
    assert speeds == [1.0, 4.0]


class FakeClock:
    """A monotonic clock that only moves when the pacer waits on the stop event."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.stop_after: int | None = None

    def __call__(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(round(timeout, 6))
        self.now += timeout
        return self.stop_after is not None and len(self.waits) >= self.stop_after


def test_pacing_releases_each_chunk_when_its_audio_has_been_spoken() -> None:
    """At speed N a chunk waits until its last sample's time divided by N; speed 0 never waits."""
    chunks = [b"\x00" * 3200] * 4  # 100 ms each at 16 kHz mono
    clock = FakeClock()
    assert list(cli.paced(iter(chunks), speed=1, bytes_per_second=32000, stop=clock, clock=clock)) == chunks
    assert clock.waits == [0.1] * 4
    clock = FakeClock()
    assert len(list(cli.paced(iter(chunks), speed=2, bytes_per_second=32000, stop=clock, clock=clock))) == 4
    assert clock.waits == [0.05] * 4
    clock = FakeClock()
    assert len(list(cli.paced(iter(chunks), speed=0, bytes_per_second=32000, stop=clock, clock=clock))) == 4
    assert clock.waits == []


def test_pacing_catches_up_after_a_stall_and_stops_when_told() -> None:
    """A source that fell behind is sent without waiting until it is on time; a set stop ends the stream."""

    def stalling(clock: FakeClock) -> Iterator[bytes]:
        yield b"\x00" * 3200
        clock.now += 0.35  # the decoder stalled for 350 ms
        yield from [b"\x00" * 3200] * 4

    clock = FakeClock()
    assert len(list(cli.paced(stalling(clock), speed=1, bytes_per_second=32000, stop=clock, clock=clock))) == 5
    assert clock.waits == [0.1, 0.05]  # chunks 2-4 were late; chunk 5 was due at 0.5 s
    clock = FakeClock()
    clock.stop_after = 2
    chunks = iter([b"\x00" * 3200] * 5)
    assert len(list(cli.paced(chunks, speed=1, bytes_per_second=32000, stop=clock, clock=clock))) == 1


def test_first_interrupt_stops_the_audio_and_the_second_quits() -> None:
    """While live audio is sent, Ctrl-C once sets the stop event (the last results still come); twice raises."""
    stop = threading.Event()
    before = signal.getsignal(signal.SIGINT)
    with cli._interrupt_stops(stop):
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_rpc_error_clears_the_interim_and_exits_64_plus_code(
    fake_client: type[FakeLiveClient], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed live call leaves no half-drawn interim and exits 64 + its code with CODE: message [REASON]."""
    fake_client.script = NO_EVENTS[:3]
    fake_client.error = TranscribeError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "every live session is taken", reason="LIVE_CAPACITY"
    )
    out = TtyOutput()
    monkeypatch.setattr("sys.stdout", out)
    assert cli.main(["live", str(PCM), "--pcm-rate", "16000", "--speed", "0"]) == 72
    assert out.getvalue().endswith(f"{CLEAR}The quick brown fox{CLEAR}")
    expected = "transcribe-cli: RESOURCE_EXHAUSTED: every live session is taken [LIVE_CAPACITY]\n"
    assert capsys.readouterr().err == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_audio.txt", "not an audio file FFmpeg can decode"),
        ("video_only.mp4", "has no audio stream"),
        ("missing.wav", "No such file or directory"),
    ],
)
def test_unreadable_files_are_local_errors(
    fake_client: type[FakeLiveClient], capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    """A file that is missing or holds no decodable audio exits 1 before any call is made."""
    assert cli.main(["live", str(DATA / name), "--speed", "0"]) == cli.EXIT_LOCAL_ERROR
    assert capsys.readouterr().err == f"transcribe-cli: {DATA / name}: {message}\n"
    assert fake_client.instances == []


@pytest.mark.parametrize(
    "argv",
    [
        ["live"],
        ["live", "a.wav", "--speed", "-1"],
        ["live", "a.wav", "--speed", "fast"],
        ["live", "a.wav", "--interim", "--no-interim"],
        ["live", "a.pcm", "--pcm-channels", "2"],
        ["live", "a.wav", "--endpoint-ms", "0"],
        ["live", "a.wav", "--format", "srt"],
    ],
)
def test_live_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad live arguments exit 2 before anything is read or sent."""
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "error" in capsys.readouterr().err


def test_live_refuses_a_terminal_on_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`live -` with a terminal on standard input is a usage error, not a hang."""

    class TtyInput(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", TtyInput())
    assert cli.main(["live", "-"]) == cli.EXIT_USAGE
    assert "terminal" in capsys.readouterr().err


def test_help_describes_live(capsys: pytest.CaptureFixture[str]) -> None:
    """`live --help` documents pacing, interims and the stdin layout."""
    assert cli.main(["live", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--speed", "--interim", "--no-interim", "--vad-events", "--endpoint-ms", "--pcm-rate", "--format"):
        assert flag in out

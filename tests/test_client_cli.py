"""Tests for transcribe-cli's argument handling, output and exit codes, without a server."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client import cli
from transcribe_client.client import PcmFormat
from transcribe_client.errors import TranscribeError

UNREACHABLE = "127.0.0.1:1"


class FakeClient:
    """Stands in for TranscribeClient: records its arguments and returns canned results."""

    instances: ClassVar[list[FakeClient]] = []
    error: ClassVar[TranscribeError | None] = None

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self.target = target
        self.kwargs = kwargs
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        FakeClient.instances.append(self)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def transcribe(self, audio: Any, **kwargs: Any) -> pb.Transcript:
        self.calls.append(("transcribe", audio, kwargs))
        if FakeClient.error is not None:
            raise FakeClient.error
        segment = pb.TranscriptSegment(text=" Hi.")
        segment.start_offset.FromMilliseconds(1500)
        segment.end_offset.FromMilliseconds(3000)
        return pb.Transcript(text=" Hi.", segments=[segment])

    def list_models(self, **kwargs: Any) -> list[pb.ModelInfo]:
        return [
            pb.ModelInfo(name="base", backend=pb.BACKEND_LOCAL, engine="faster-whisper", is_default=True),
            pb.ModelInfo(name="whisper-1", backend=pb.BACKEND_OPENAI, engine="openai", loaded=True),
        ]

    def health(self, service: str = "", **kwargs: Any) -> str:
        return "NOT_SERVING" if service else "SERVING"


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    """Replace the CLI's TranscribeClient with FakeClient."""
    FakeClient.instances = []
    FakeClient.error = None
    monkeypatch.setattr(cli, "TranscribeClient", FakeClient)
    return FakeClient


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    """A small file to pass as FILE."""
    path = tmp_path / "speech.wav"
    path.write_bytes(b"RIFF0000WAVE")
    return path


def test_missing_file_is_a_local_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist exits 1 with a one-line message and no traceback."""
    missing = tmp_path / "missing.wav"
    assert cli.main([str(missing), "--address", UNREACHABLE]) == cli.EXIT_LOCAL_ERROR
    err = capsys.readouterr().err
    assert err == f"transcribe-cli: {missing}: No such file or directory\n"


def test_directory_is_a_local_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory instead of a file exits 1."""
    assert cli.main(["transcribe", str(tmp_path), "--address", UNREACHABLE]) == 1
    assert "Is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["speech.wav", "--bogus"],
        ["speech.wav", "--timeout", "0"],
        ["speech.wav", "--format", "docx"],
        ["speech.wav", "--stream", "--no-stream"],
        ["speech.wav", "--pcm-channels", "2"],
        ["speech.wav", "--cert", "client.pem"],
        ["speech.wav", "--address", "a.example:1,b.example:2"],
        ["models", "--format", "srt"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments exit 2 before anything is sent."""
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "error" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage, the subcommands and the exit codes, and exits 0."""
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "{transcribe,live,submit,jobs,health,models}" in out
    assert "78 UNAVAILABLE" in out


def test_unreachable_server_health_is_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    """Health against a closed port fails fast with UNAVAILABLE, exit 64 + 14."""
    assert cli.main(["health", "--address", UNREACHABLE, "--timeout", "5"]) == 78
    assert capsys.readouterr().err.startswith("transcribe-cli: UNAVAILABLE: ")


def test_unreachable_server_models_exhausts_retries(capsys: pytest.CaptureFixture[str]) -> None:
    """ListModels is retried on UNAVAILABLE (about 1.4 s of backoff) and then exits 78."""
    assert cli.main(["models", "--address", UNREACHABLE, "--timeout", "10"]) == 78
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_unary_retries_run_into_a_short_deadline(audio_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a 1 s deadline the retry backoff (at least 1.1 s in total) outlasts it: DEADLINE_EXCEEDED, 68."""
    argv = [str(audio_file), "--no-stream", "--address", UNREACHABLE, "--timeout", "1"]
    assert cli.main(argv) == 68
    assert capsys.readouterr().err.startswith("transcribe-cli: DEADLINE_EXCEEDED: ")


def test_stdin_streams_and_fails_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` streams standard input; TranscribeStream is not retried, so a closed port gives 78."""

    read_end, write_end = os.pipe()
    os.write(write_end, b"\x00\x01" * 5000)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(pipe))
        assert cli.main(["-", "--pcm-rate", "16000", "--address", UNREACHABLE, "--timeout", "5"]) == 78
    assert "UNAVAILABLE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 67),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 68),
        (grpc.StatusCode.NOT_FOUND, 69),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 72),
        (grpc.StatusCode.FAILED_PRECONDITION, 73),
        (grpc.StatusCode.INTERNAL, 77),
        (grpc.StatusCode.UNAVAILABLE, 78),
        (grpc.StatusCode.UNAUTHENTICATED, 80),
    ],
)
def test_rpc_errors_exit_64_plus_status_code(
    fake_client: type[FakeClient],
    audio_file: Path,
    capsys: pytest.CaptureFixture[str],
    code: grpc.StatusCode,
    exit_code: int,
) -> None:
    """An RPC error exits with 64 plus its numeric status code, as grpcurl does."""
    fake_client.error = TranscribeError(
        code,
        "it failed",
        reason="SOME_REASON",
        field_violations=[("config.language_code", "not a BCP-47 tag")],
    )
    assert cli.main([str(audio_file)]) == exit_code
    assert capsys.readouterr().err == (
        f"transcribe-cli: {code.name}: it failed [SOME_REASON]\n  config.language_code: not a BCP-47 tag\n"
    )


def test_options_reach_the_client(
    fake_client: type[FakeClient],
    audio_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every transcription and connection option is passed on to the client."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA")
    monkeypatch.setenv("TRANSCRIBE_TOKEN", "from-env")
    argv = [
        "transcribe",
        str(audio_file),
        "--stream",
        "--backend=local",
        "--model=small",
        "--language=de",
        "--task=translate",
        "--prompt=Grüße",
        "--temperature=0.2",
        "--words",
        "--pcm-rate=8000",
        "--pcm-channels=2",
        "--address=127.0.0.1:5,127.0.0.1:6",
        "--timeout=12",
        "--ca-cert",
        str(ca),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == "Hi.\n"
    [client] = fake_client.instances
    assert client.target == ["127.0.0.1:5", "127.0.0.1:6"]
    assert client.kwargs["timeout"] == 12.0
    assert client.kwargs["token"] == "from-env"
    assert client.kwargs["root_certificates"] == b"CA"
    [(_, audio, kwargs)] = client.calls
    assert audio == str(audio_file)
    assert kwargs["stream"] is True
    assert kwargs["backend"] == "local"
    assert kwargs["model"] == "small"
    assert kwargs["language"] == "de"
    assert kwargs["task"] == "translate"
    assert kwargs["prompt"] == "Grüße"
    assert kwargs["temperature"] == 0.2
    assert kwargs["word_timestamps"] is True
    assert kwargs["pcm"] == PcmFormat(sample_rate_hertz=8000, channels=2)
    assert kwargs["timeout"] == 12.0


def test_output_format_follows_the_output_suffix(
    fake_client: type[FakeClient], audio_file: Path, tmp_path: Path
) -> None:
    """--output x.srt writes SubRip without --format; --format overrides the suffix."""
    srt = tmp_path / "out.srt"
    assert cli.main([str(audio_file), "--output", str(srt)]) == 0
    assert srt.read_text(encoding="utf-8") == "1\n00:00:01,500 --> 00:00:03,000\nHi.\n"
    vtt = tmp_path / "out.txt"
    assert cli.main([str(audio_file), "-o", str(vtt), "--format", "vtt"]) == 0
    assert vtt.read_text(encoding="utf-8").startswith("WEBVTT\n")


def test_models_and_health_commands(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    """`models` prints a table or JSON; `health` prints the status and exits 3 unless SERVING."""
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BACKEND", "ENGINE", "LOADED", "MULTILINGUAL", "DEFAULT"]
    assert lines[1].split() == ["base", "local", "faster-whisper", "no", "no", "yes"]
    assert cli.main(["models", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][1]["name"] == "whisper-1"
    assert cli.main(["health"]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    assert cli.main(["health", "--service", "transcribe.v1.TranscribeService"]) == cli.EXIT_NOT_SERVING

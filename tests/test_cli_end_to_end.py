"""transcribe-cli against a real server: output formats, stdin, files, subcommands and exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.conftest import DATA, StartServer

CLI = str(Path(sys.executable).with_name("transcribe-cli"))


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the installed CLI without blocking the server's event loop."""
    process = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 180)
    return process.returncode or 0, out.decode(), err.decode()


async def test_formats_stdin_and_output_file(start_server: StartServer, tmp_path: Path) -> None:
    """Text, SRT, JSON with words, a streamed upload from stdin, and --output all carry the transcript."""
    server = await start_server()
    address = ("--address", server.target, "--quiet")
    code, out, err = await cli(str(DATA / "speech_en.mp3"), *address)
    assert code == 0, err
    assert "fox" in out.lower()
    code, out, _ = await cli(str(DATA / "speech_en.flac"), "--format", "srt", *address)
    assert code == 0
    assert out.startswith("1\n00:00:0")
    assert " --> " in out
    code, out, _ = await cli(str(DATA / "speech_en.wav"), "--words", "--format", "json", *address)
    words = [w for s in json.loads(out)["segments"] for w in s["words"]]
    assert len(words) >= 8
    code, out, _ = await cli("-", "--stream", *address, stdin=(DATA / "speech_en.ogg").read_bytes())
    assert code == 0
    assert "fox" in out.lower()
    target = tmp_path / "out.vtt"
    code, _, _ = await cli(str(DATA / "speech_en.m4a"), "--output", str(target), *address)
    assert code == 0
    assert target.read_text().startswith("WEBVTT")


async def test_subcommands_and_exit_codes(start_server: StartServer, tmp_path: Path) -> None:
    """health and models work; a bad file exits 64 + INVALID_ARGUMENT; a missing file exits 1."""
    server = await start_server()
    code, out, _ = await cli("health", "--address", server.target)
    assert code == 0
    assert "SERVING" in out
    code, out, _ = await cli("models", "--address", server.target)
    assert code == 0
    assert "tiny.en" in out
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not audio at all")
    code, _, err = await cli(str(junk), "--address", server.target)
    assert code == 64 + 3
    assert "AUDIO_UNDECODABLE" in err
    code, _, _ = await cli(str(tmp_path / "missing.wav"), "--address", server.target)
    assert code == 1
    code, _, err = await cli(str(DATA / "speech_en.wav"), "--model", "nope", "--address", server.target)
    assert code == 64 + 5
    assert "MODEL_NOT_FOUND" in err

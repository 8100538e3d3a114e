"""The Python live client and `transcribe-cli live` against a real server and model, fed faster than real time."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import DATA, REPO, StartServer
from tests.helpers import assert_has_words
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client import AsyncTranscribeClient, TranscribeClient, TranscribeError

CLI = str(Path(sys.executable).with_name("transcribe-cli"))
PCM = DATA / "speech_en_s16le_16k_mono.pcm"
CHUNK = 3200  # 100 ms of 16 kHz mono LINEAR16
# These tests pin delivery (both utterances arrive, in order), not accuracy: word error rates belong to the server's
# live tests and the benchmark. One word from each end of each utterance of speech_en.
WORDS = ("quick", "fox", "she", "shore")


def pcm_chunks() -> Iterator[bytes]:
    """The spoken PCM fixture in 100 ms chunks."""
    audio = PCM.read_bytes()
    for start in range(0, len(audio), CHUNK):
        yield audio[start : start + CHUNK]


def assert_words_in_order(text: str) -> None:
    """WORDS appear in the text in their spoken order."""
    lowered = text.lower()
    assert_has_words(lowered, WORDS)
    positions = [lowered.index(word) for word in WORDS]
    assert positions == sorted(positions), text


def finals_of(responses: list[pb.TranscribeLiveResponse]) -> list[pb.LiveResult]:
    return [result for response in responses for result in response.results if result.is_final]


def assert_ordered_finals(finals: list[pb.LiveResult]) -> None:
    """Final results do not overlap and each starts before it ends."""
    ends = 0.0
    for result in finals:
        start = result.start_offset.ToTimedelta().total_seconds()
        end = result.end_offset.ToTimedelta().total_seconds()
        assert ends <= start + 1e-3 <= end + 2e-3, (ends, start, end, result.text)
        ends = end


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


async def test_sync_client_gets_the_whole_text_as_ordered_finals(start_server: StartServer) -> None:
    """The sync live call on spoken PCM yields the backend first, then finals that hold every word, in order."""
    server = await start_server()
    with TranscribeClient(server.target) as client:
        responses = await asyncio.to_thread(lambda: list(client.live(pcm_chunks(), language="en")))
    assert responses[0].backend == pb.BACKEND_LOCAL
    assert responses[0].model == "tiny.en"
    finals = finals_of(responses)
    assert finals
    assert_words_in_order(" ".join(result.text for result in finals))
    assert_ordered_finals(finals)
    last_final = max(index for index, response in enumerate(responses) if any(r.is_final for r in response.results))
    assert not [r for response in responses[last_final + 1 :] for r in response.results if not r.is_final]


async def test_async_client_without_interims_gets_finals_only(start_server: StartServer) -> None:
    """The async live call from an async iterable, with interim_results off, gets only final results."""
    server = await start_server()

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in pcm_chunks():
            yield chunk

    async with AsyncTranscribeClient(server.target) as client:
        responses = [response async for response in client.live(chunks(), interim_results=False, language="en")]
    results = [result for response in responses for result in response.results]
    assert results
    assert all(result.is_final for result in results)
    assert_words_in_order(" ".join(result.text for result in results))


async def test_live_errors_are_transcribe_errors(start_server: StartServer) -> None:
    """An unknown model fails the live call with NOT_FOUND and its ErrorInfo reason."""
    server = await start_server()
    async with AsyncTranscribeClient(server.target) as client:
        with pytest.raises(TranscribeError) as caught:
            async for _ in client.live(pcm_chunks(), model="no-such-model"):
                pass
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "MODEL_NOT_FOUND"


async def test_cli_live_file_stdin_and_json(start_server: StartServer) -> None:
    """`live FILE --speed 0` and `live -` print the finals as lines; --format json prints one object per line."""
    server = await start_server()
    code, out, err = await cli("live", str(DATA / "speech_en.mp3"), "--speed", "0", "--address", server.target)
    assert code == 0, err
    assert_words_in_order(out)
    assert "\r" not in out  # not a terminal: finals only
    code, out, err = await cli("live", "-", "--address", server.target, stdin=PCM.read_bytes())
    assert code == 0, err
    assert_words_in_order(out)
    code, out, err = await cli(
        "live", str(PCM), "--pcm-rate", "16000", "--speed", "0", "--format", "json", "--vad-events",
        "--address", server.target,
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["backend"] == "local"
    finals = [result for line in lines for result in line.get("results", []) if result["is_final"]]
    assert_words_in_order(" ".join(result["text"] for result in finals))
    assert all(isinstance(result["end_offset"], float) for result in finals)
    assert {line["voice_activity"]["type"] for line in lines if "voice_activity" in line} == {
        "speech_begin",
        "speech_end",
    }


async def test_cli_live_exit_codes(start_server: StartServer) -> None:
    """A refused live call exits 64 + its status code with the reason on stderr."""
    server = await start_server()
    code, out, err = await cli(
        "live", str(PCM), "--pcm-rate", "16000", "--speed", "0", "--model", "nope", "--address", server.target
    )
    assert code == 64 + 5
    assert out == ""
    assert "MODEL_NOT_FOUND" in err


def readme_live_block(language: str, needle: str) -> str:
    """The fenced block of the README's "Live transcription" section in `language` that contains `needle`."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Live transcription\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", section, re.M | re.S)
    [block] = [block for block in blocks if needle in block]
    return str(block)


@pytest.mark.grpcurl
async def test_readme_grpcurl_live_example_works_as_pasted(start_server: StartServer) -> None:
    """The README's grpcurl TranscribeLive pipeline, run by bash from the repository, streams back ordered finals."""
    server = await start_server()
    command = readme_live_block("sh", "TranscribeLive").replace("localhost:50051", server.target)
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", command,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    responses = [json.loads(message) for message in re.split(r"(?<=\n})\n(?={)", out.decode().strip())]
    assert responses[0]["backend"] == "BACKEND_LOCAL"
    results = [result for response in responses for result in response.get("results", [])]
    finals = [result["text"] for result in results if result.get("is_final")]  # grpcurl prints proto field names
    assert_words_in_order(" ".join(finals))
    assert any("voice_activity" in response for response in responses)


async def test_readme_python_live_example_works(start_server: StartServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's sync Python live snippet runs as written and prints final results."""
    server = await start_server()
    code = readme_live_block("python", "with TranscribeClient(")
    code = code.replace("localhost:50051", server.target).replace('"tests/data/', f'"{DATA}/')
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
    finals = [line for line in capsys.readouterr().out.splitlines() if line.startswith("final")]
    assert_words_in_order(" ".join(finals))

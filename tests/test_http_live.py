"""Live captions over the HTTP face's WebSocket, driven by the `websockets` client against the real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from service.domain import BackendKind
from service.logs import RequestIdFilter
from tests.conftest import DATA, Fixture, RunningServer, StartServer, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import assert_has_words

LIVE = "/v1/audio/live"
PCM = (DATA / "speech_en_s16le_16k_mono.pcm").read_bytes()
WEBM = (DATA / "speech_en.webm").read_bytes()
LINEAR16 = {"audio_format": "linear16", "sample_rate": 16000, "channels": 1}
END = json.dumps({"type": "end"})
HEARD = ("quick", "brown", "fox", "lazy", "shells", "shore")
"""Words live tiny.en hears in the fixture every time (it may hear "the lazy dog" as "the lazy target")."""


@dataclass
class Conversation:
    """What a live connection received, and how it was closed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    subprotocol: str | None = None
    request_id: str = ""

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The messages of one type, in order."""
        return [m for m in self.messages if m["type"] == kind]

    def finals(self) -> str:
        """The text of the final results, joined."""
        return " ".join(m["text"] for m in self.of_type("result") if m["is_final"])

    def error(self) -> dict[str, Any]:
        """The OpenAI-shaped error object of the one error message, which is the last message."""
        assert self.messages, "nothing was received"
        last = self.messages[-1]
        assert last["type"] == "error", self.messages
        assert set(last["error"]) == {"message", "type", "param", "code"}
        return dict(last["error"])


def url_of(server: RunningServer, query: str = "") -> str:
    """The WebSocket URL of the live route."""
    return server.http_url.replace("http://", "ws://", 1) + LIVE + query


async def receive_all(socket: ClientConnection, into: Conversation) -> Conversation:
    """Every message until the server closes the connection; then its close code."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = await socket.recv()
            assert isinstance(message, str), "the server sends text messages only"
            into.messages.append(json.loads(message))
    into.close_code, into.close_reason = socket.close_code, socket.close_reason or ""
    return into


async def converse(
    server: RunningServer,
    first: str | bytes | dict[str, Any],
    audio: bytes = b"",
    *,
    chunk: int = 3200,
    end: bool = True,
    query: str = "",
    **connect_options: Any,
) -> Conversation:
    """Connect, send the first message, the audio in pieces and (when `end`) the end message while reading."""
    async with connect(url_of(server, query), **connect_options) as socket:
        conversation = Conversation(
            subprotocol=socket.subprotocol,
            request_id=(socket.response.headers.get("x-request-id") if socket.response else None) or "",
        )

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed):  # an error may close the connection mid-stream
                await socket.send(json.dumps(first) if isinstance(first, dict) else first)
                for start in range(0, len(audio), chunk):
                    await socket.send(audio[start : start + chunk])
                if end:
                    await socket.send(END)

        sending = asyncio.create_task(send())
        try:
            return await asyncio.wait_for(receive_all(socket, conversation), 120)
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending


async def sessions_closed(server: RunningServer) -> None:
    """Wait until the server holds no live session."""
    for _ in range(200):
        if server.live.gate.in_flight == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server.live.gate.in_flight} live sessions still open")


async def test_webm_sent_in_small_pieces_gives_finals_with_the_spoken_words(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A WebM/Opus stream in 1000-byte pieces, as MediaRecorder sends it, comes back as finals, then done and 1000."""
    server = await start_server(http_port=0)
    caplog.set_level(logging.INFO, logger="service.calls")
    caplog.handler.addFilter(RequestIdFilter())
    got = await converse(server, {"audio_format": "webm-opus", "interim_results": False}, WEBM, chunk=1000)
    assert_has_words(got.finals(), HEARD)
    assert got.messages[0] == {
        "type": "session",
        "request_id": got.request_id,
        "backend": "local",
        "model": "tiny.en",
    }
    assert len(got.request_id) == 32
    assert all(m["is_final"] and m["stability"] == 0 for m in got.of_type("result"))
    assert got.messages[-1] == {"type": "done"}
    assert got.close_code == 1000
    calls = [r.__dict__ for r in caplog.records if r.name == "service.calls"]
    logged = next(c for c in calls if c["rpc_method"] == f"WEBSOCKET {LIVE}")
    assert (logged["code"], logged["backend"], logged["model"]) == ("200", "local", "tiny.en")
    assert logged["request_id"] == got.request_id
    labels = {"method": f"WEBSOCKET {LIVE}", "code": "200"}
    assert server.metrics.registry.get_sample_value("transcribe_calls_total", labels) == 1


async def test_linear16_gives_voice_events_and_finals_with_words_in_order(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """LINEAR16 in 100 ms pieces gives speech_begin first, finals in order with word timings, and a request id."""
    server = await start_server(http_port=0)
    config = LINEAR16 | {"voice_activity_events": True, "word_timestamps": True, "language": "en"}
    got = await converse(server, config, PCM, additional_headers={"x-request-id": "live-req-7"})
    assert got.request_id == "live-req-7"
    assert got.messages[0]["request_id"] == "live-req-7"
    assert_has_words(got.finals(), HEARD)
    events = [m for m in got.messages if m["type"] in ("voice_activity", "result")]
    assert events[0] == {"type": "voice_activity", "event": "speech_begin", "offset": events[0]["offset"]}
    assert any(m.get("event") == "speech_end" for m in events)
    finals = [m for m in got.of_type("result") if m["is_final"]]
    starts = [m["start"] for m in finals]
    assert starts == sorted(starts)
    assert finals[-1]["end"] <= spoken["speech_en.wav"].duration + 0.1
    for final in finals:
        assert final["words"]
        assert {"word", "start", "end", "probability"} == set(final["words"][0])
        assert final["start"] - 0.05 <= final["words"][0]["start"] <= final["end"] + 0.5
    assert got.close_code == 1000


async def test_interims_come_before_their_final(start_server: StartServer) -> None:
    """Fed at a pace that leaves time for them, interims (with a stability) precede the final of their utterance."""
    server = await start_server(http_port=0, live_interim_interval_seconds=0.5)
    async with connect(url_of(server)) as socket:
        await socket.send(json.dumps(LINEAR16 | {"interim_results": True}))
        # The first 2 s of speech, then nothing more until an interim of it has come back.
        for start in range(0, 16000 * 2 * 2, 3200):
            await socket.send(PCM[start : start + 3200])
        messages = [json.loads(await socket.recv())]
        while messages[-1]["type"] != "result":
            messages.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
        interim = messages[-1]
        assert not interim["is_final"]
        assert 0 <= interim["stability"] <= 1
        for start in range(16000 * 2 * 2, len(PCM), 3200):
            await socket.send(PCM[start : start + 3200])
        await socket.send(END)
        got = await receive_all(socket, Conversation(messages=messages))
    results = got.of_type("result")
    first_final = next(i for i, m in enumerate(results) if m["is_final"])
    assert results[first_final]["start"] == interim["start"]
    assert not any(m["start"] == interim["start"] and not m["is_final"] for m in results[first_final:])
    assert "fox" in got.finals().lower()


async def test_bad_configs_and_messages_get_their_error_and_close_code(start_server: StartServer) -> None:
    """Each bad first message, config field, model, framing, message order or a silent start gets OpenAI's error and
    a close with 4000 + its HTTP status."""
    server = await start_server(http_port=0)
    cases: list[tuple[str | bytes | dict[str, Any], bytes, str, str | None, int]] = [
        (PCM[:3200], b"", "stream_out_of_order", None, 4400),
        ("{not json", b"", "invalid_config", None, 4400),
        ({"model": "tiny.en"}, PCM, "invalid_config", "audio_format", 4400),
        ({"audio_format": "mp4"}, PCM, "invalid_config", "audio_format", 4400),
        (LINEAR16 | {"sample_rate": 0}, PCM, "invalid_config", "sample_rate", 4400),
        (LINEAR16 | {"sampleRate": 16000}, PCM, "invalid_config", "sampleRate", 4400),
        ({"audio_format": "webm-opus", "sample_rate": 48000}, WEBM, "invalid_config", "sample_rate", 4400),
        (LINEAR16 | {"interim_results": "yes"}, PCM, "invalid_config", "interim_results", 4400),
        (LINEAR16 | {"speech_end_timeout": 30}, PCM, "invalid_config", "speech_end_timeout", 4400),
        (LINEAR16 | {"language": "english!"}, PCM, "invalid_config", "language", 4400),
        (LINEAR16 | {"model": "no-such-model"}, PCM, "model_not_found", "model", 4404),
        (LINEAR16, PCM[:32000] + b"\x01", "audio_truncated", None, 4400),
        ({"audio_format": "webm-opus"}, b"definitely not webm " * 500, "audio_undecodable", None, 4400),
        (LINEAR16 | {"speech_start_timeout": 2}, bytes(16000 * 2 * 5), "speech_start_timeout", None, 4408),
    ]
    for first, audio, code, param, close_code in cases:
        got = await converse(server, first, audio)
        error = got.error()
        assert (error["code"], error["param"], error["type"], got.close_code) == (
            code,
            param,
            "invalid_request_error",
            close_code,
        ), (first, got.messages)
        assert got.close_reason == code
    async with connect(url_of(server)) as socket:
        await socket.send(json.dumps(LINEAR16))
        await socket.send(PCM[:3200])
        await socket.send(json.dumps(LINEAR16))
        got = await receive_all(socket, Conversation())
    assert (got.error()["code"], got.close_code) == ("stream_out_of_order", 4400)
    await sessions_closed(server)


async def test_tokens_come_in_the_header_a_subprotocol_or_the_query(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With tokens configured, none or a wrong one is a 4401; a header, a `bearer.` subprotocol or `?token=` works;
    no token reaches the logs."""
    server = await start_server(http_port=0, auth_tokens="s3cret,other")
    caplog.set_level(logging.DEBUG)
    silence = bytes(3200)
    refused: list[tuple[dict[str, Any], str]] = [
        ({}, ""),
        ({"subprotocols": ["transcribe-live", "bearer.wrong"]}, ""),
        ({}, "?token=no"),
    ]
    for options, query in refused:
        got = await converse(server, LINEAR16, silence, query=query, **options)
        assert (got.error()["code"], got.error()["type"], got.close_code) == (
            "unauthenticated",
            "authentication_error",
            4401,
        )
    accepted: list[tuple[dict[str, Any], str, str | None]] = [
        ({"additional_headers": {"authorization": "Bearer s3cret"}}, "", None),
        ({"subprotocols": ["transcribe-live", "bearer.other"]}, "", "transcribe-live"),
        ({"subprotocols": ["bearer.other"]}, "", "bearer.other"),
        ({}, "?token=s3cret", None),
    ]
    for options, query, subprotocol in accepted:
        got = await converse(server, LINEAR16, silence, query=query, **options)
        assert [m["type"] for m in got.messages] == ["session", "done"], got.messages
        assert (got.close_code, got.subprotocol) == (1000, subprotocol)
    server_side = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client"))
    assert "WEBSOCKET /v1/audio/live" in server_side
    assert re.findall(r"s3cret|other|token=no", server_side) == []


async def test_the_api_backend_gives_finals_only(start_server: StartServer, fake_openai: FakeOpenAIServer) -> None:
    """With the API backend live gives finals per utterance; asking it for interims is refused with its param."""
    backend = openai_backend_for(fake_openai)
    server = await start_server(
        backends={BackendKind.OPENAI: backend}, default_backend="openai", openai_api_key="k", http_port=0
    )
    refused = await converse(server, LINEAR16 | {"interim_results": True}, PCM)
    assert (refused.error()["code"], refused.error()["param"], refused.close_code) == (
        "live_not_supported",
        "interim_results",
        4400,
    )
    got = await converse(server, LINEAR16 | {"interim_results": False}, PCM)
    assert got.messages[0]["backend"] == "openai"
    assert got.of_type("result")
    assert all(m["is_final"] and m["text"] for m in got.of_type("result"))


async def test_sessions_beyond_capacity_are_refused_and_closing_frees_a_place(start_server: StartServer) -> None:
    """With one place, a second session gets 429's overloaded and a retry delay; closing the first frees it at once."""
    server = await start_server(http_port=0, live_max_sessions=1)
    async with connect(url_of(server)) as first:
        await first.send(json.dumps(LINEAR16))
        await first.send(bytes(3200))
        assert json.loads(await first.recv())["type"] == "session"
        got = await converse(server, LINEAR16, bytes(3200))
        assert (got.error()["code"], got.error()["type"], got.close_code) == ("overloaded", "rate_limit_error", 4429)
        assert got.messages[-1]["retry_after_seconds"] > 0
    await sessions_closed(server)
    again = await converse(server, LINEAR16, bytes(3200))
    assert again.close_code == 1000


async def test_a_silent_client_is_ended_by_the_idle_timeout(start_server: StartServer) -> None:
    """A client that sends nothing for longer than the stream idle timeout gets stream_idle_timeout and 4408."""
    server = await start_server(http_port=0, stream_idle_timeout_seconds=0.5)
    got = await converse(server, LINEAR16, bytes(3200), end=False)
    assert (got.error()["code"], got.close_code) == ("stream_idle_timeout", 4408)
    await sessions_closed(server)


async def test_a_message_out_of_order_after_speech_ends_it_after_the_finals_of_that_speech(
    start_server: StartServer,
) -> None:
    """Speech, then a text message that is not the end: the speech's finals come first, then stream_out_of_order
    and 4400."""
    server = await start_server(http_port=0)
    async with connect(url_of(server)) as socket:
        await socket.send(json.dumps(LINEAR16 | {"interim_results": False}))
        for start in range(0, len(PCM), 3200):
            await socket.send(PCM[start : start + 3200])
        await socket.send(json.dumps({"type": "more"}))
        got = await receive_all(socket, Conversation())
    assert (got.error()["code"], got.close_code) == ("stream_out_of_order", 4400)
    assert_has_words(got.finals(), HEARD)
    await sessions_closed(server)


async def test_draining_flushes_the_last_finals_then_closes_with_1012(start_server: StartServer) -> None:
    """On shutdown a session stops taking audio, sends the finals of what it heard, done, and closes with 1012."""
    server = await start_server(http_port=0)
    assert server.http is not None
    async with connect(url_of(server)) as socket:
        await socket.send(json.dumps(LINEAR16 | {"interim_results": False}))
        for start in range(0, len(PCM), 3200):
            await socket.send(PCM[start : start + 3200])
        messages = [json.loads(await socket.recv())]
        while messages[-1]["type"] != "result":  # the first utterance's final: the server has the audio
            messages.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
        stopping = asyncio.create_task(server.http.stop())
        got = await receive_all(socket, Conversation(messages=messages))
        await asyncio.wait_for(stopping, 60)
    assert_has_words(got.finals(), HEARD)
    assert got.messages[-1] == {"type": "done"}
    assert got.close_code == 1012
    await sessions_closed(server)

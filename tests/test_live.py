"""Live transcription over TranscribeLive: utterances, interims, finals, voice events and every refusal."""

from __future__ import annotations

import asyncio
import difflib
import io
import itertools
import queue
import re
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from service.audio.decode import WHISPER_SAMPLE_RATE, decode_to_whisper_input
from service.audio.store import UploadStore
from service.backends.local import LocalBackend
from service.core.live import LiveLimits, LiveTranscriber
from service.domain import (
    BackendKind,
    LiveFormat,
    LiveOptions,
    LiveResult,
    RawPcmFormat,
    Recognition,
    SpokenBefore,
    Task,
    TranscriptionOptions,
)
from service.engines.base import EngineRequest, EngineResult
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine, written_after
from tests.conftest import DATA, MODEL_CACHE, Fixture, StartServer, openai_backend_for
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import error_details, linear16
from transcribe.v1 import transcribe_service_pb2 as pb

CHUNK = 3200  # 100 ms of 16 kHz 16-bit mono


def pcm_of(name: str) -> bytes:
    """A fixture decoded to 16 kHz mono LINEAR16."""
    samples = decode_to_whisper_input(DATA / name)
    return linear16(samples)


def live_config(**fields: Any) -> pb.TranscribeLiveRequest:
    """A first message for 16 kHz mono LINEAR16, with the given LiveConfig fields."""
    base: dict[str, Any] = {
        "audio_format": pb.LIVE_AUDIO_FORMAT_LINEAR16,
        "sample_rate_hertz": 16000,
        "audio_channel_count": 1,
    }
    return pb.TranscribeLiveRequest(live_config=pb.LiveConfig(**(base | fields)))


async def stream(first: pb.TranscribeLiveRequest | None, audio: bytes, chunk: int = CHUNK) -> AsyncIterator[Any]:
    """The config (when given), then the audio in chunks, as fast as the server takes them."""
    if first is not None:
        yield first
    for start in range(0, len(audio), chunk):
        yield pb.TranscribeLiveRequest(audio_content=audio[start : start + chunk])


async def responses(call: Any) -> list[pb.TranscribeLiveResponse]:
    """Every response of a live call."""
    return [response async for response in call]


def seconds(value: Duration) -> float:
    """A Duration in seconds."""
    return value.ToNanoseconds() / 1e9


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    return re.findall(r"[a-z']+", text.lower())


def finals(received: Iterable[pb.TranscribeLiveResponse]) -> list[pb.LiveResult]:
    """The final results, in order."""
    return [result for response in received for result in response.results if result.is_final]


async def test_finals_cover_the_whole_text_once_in_order(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """A minute of speech comes back as finals whose words follow the spoken text, none lost or repeated."""
    server = await start_server()
    fixture = spoken["speech_en_60s.ogg"]
    received = await responses(server.stub.TranscribeLive(stream(live_config(), pcm_of(fixture.path.name))))
    assert received[0].backend == pb.BACKEND_LOCAL
    assert received[0].model == "tiny.en"
    results = finals(received)
    assert len(results) >= 3, "a minute of speech with pauses is several utterances"
    assert {result.language_code for result in results} == {"en"}
    got, expected = words(" ".join(r.text for r in results)), words(fixture.text)
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    changes = [(tag, expected[i1:i2], got[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    # Misheard words are substitutions; the model may drop or add a single word now and then, but a seam between
    # utterances that lost or repeated audio would show as a run of words.
    lost_or_added = [(a, b) for _, a, b in changes if len(a) != len(b)]
    assert sum(abs(len(a) - len(b)) for a, b in lost_or_added) <= 2, changes
    assert all(abs(len(a) - len(b)) == 1 for a, b in lost_or_added), changes
    assert matcher.ratio() > 0.9
    starts = [seconds(r.start_offset) for r in results]
    ends = [seconds(r.end_offset) for r in results]
    assert starts == sorted(starts)
    assert all(end <= next_start + 1e-6 for end, next_start in zip(ends, starts[1:], strict=False))
    assert ends[-1] <= fixture.duration + 0.1


async def test_each_sentence_said_after_a_pause_is_in_its_own_final(start_server: StartServer) -> None:
    """Six sentences with pauses of 1 to 3 s come back as six finals, each sentence's first and last words in its
    own final and in no other: a final decoded after the speech before it once stopped short ("Turn left at the
    bakery"), its decode ended by a length limit that counted the forced words, and the rest came at the start of
    the next final."""
    server = await start_server()
    received = await responses(server.stub.TranscribeLive(stream(live_config(), pcm_of("speech_en_pauses.ogg"))))
    said = [words(result.text) for result in finals(received)]
    edges = [("watched", "hill"), ("bring", "bread"), ("brother", "wrench"), ("boat", "harbor"), ("turn", "blocks")]
    assert len(said) == 6, said
    for index, (first, last) in enumerate(edges):
        assert {first, last} <= set(said[index]), said
        assert not any({first, last} & set(other) for other in said[:index] + said[index + 1 :]), said


async def test_interims_come_before_the_final_of_their_utterance(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Interims of an utterance come before its final, never after; finals carry no stability; voice events come."""
    server = await start_server(live_interim_interval_seconds=0.5)
    config = live_config(interim_results=True, voice_activity_events=True)
    pcm, interim_seen = pcm_of("speech_en.wav"), asyncio.Event()

    async def requests() -> AsyncIterator[pb.TranscribeLiveRequest]:
        # The first utterance's first 2 s, then nothing more until an interim of it has come back.
        yield config
        for start in range(0, 16000 * 2 * 2, CHUNK):
            yield pb.TranscribeLiveRequest(audio_content=pcm[start : start + CHUNK])
        await interim_seen.wait()
        async for request in stream(None, pcm[16000 * 2 * 2 :]):
            yield request

    received = []
    async for response in server.stub.TranscribeLive(requests()):
        received.append(response)
        if any(not result.is_final for result in response.results):
            interim_seen.set()
    kinds = []
    for response in received:
        for result in response.results:
            kinds.append(("final" if result.is_final else "interim", seconds(result.start_offset)))
            assert 0.0 <= result.stability <= 1.0
            if result.is_final:
                assert result.stability == 0.0
        if response.HasField("voice_activity"):
            kinds.append((pb.VoiceActivityEventType.Name(response.voice_activity.type), 0.0))
    final_starts = [start for kind, start in kinds if kind == "final"]
    assert final_starts, kinds
    assert ("interim", final_starts[0]) in kinds[: kinds.index(("final", final_starts[0]))], kinds
    for start in final_starts:
        after_final = kinds[kinds.index(("final", start)) + 1 :]
        assert ("interim", start) not in after_final, "an interim never follows its utterance's final"
    assert kinds[0][0] == "VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN"
    assert any(kind == "VOICE_ACTIVITY_EVENT_TYPE_SPEECH_END" for kind, _ in kinds)
    assert "fox" in " ".join(r.text for r in finals(received)).lower()


async def test_word_offsets_on_finals_are_inside_their_utterance(start_server: StartServer) -> None:
    """Finals carry word offsets from the start of the stream when asked for."""
    server = await start_server()
    config = live_config(config=pb.TranscriptionConfig(enable_word_time_offsets=True))
    results = finals(await responses(server.stub.TranscribeLive(stream(config, pcm_of("speech_en.wav")))))
    for result in results:
        assert result.words
        for word in result.words:
            assert seconds(result.start_offset) - 0.05 <= seconds(word.start_offset) <= seconds(result.end_offset) + 0.5


async def test_silence_yields_no_text_and_no_events(start_server: StartServer) -> None:
    """A minute of silence gives no result and no voice activity event."""
    server = await start_server()
    config = live_config(interim_results=True, voice_activity_events=True)
    received = await responses(server.stub.TranscribeLive(stream(config, bytes(16000 * 2 * 60), chunk=32000)))
    assert [r for r in received if r.results or r.HasField("voice_activity")] == []


@pytest.mark.parametrize(("name", "audio_format"), [("speech_en.webm", "WEBM_OPUS"), ("speech_en.ogg", "OGG_OPUS")])
async def test_container_streams_are_decoded_as_they_arrive(
    start_server: StartServer, name: str, audio_format: str
) -> None:
    """A WebM or Ogg Opus stream, sent in small pieces as a browser would, is transcribed."""
    server = await start_server()
    config = pb.TranscribeLiveRequest(
        live_config=pb.LiveConfig(audio_format=pb.LiveAudioFormat.Value(f"LIVE_AUDIO_FORMAT_{audio_format}"))
    )
    data = (DATA / name).read_bytes()
    results = finals(await responses(server.stub.TranscribeLive(stream(config, data, chunk=1000))))
    assert "fox" in " ".join(r.text for r in results).lower()


@pytest.mark.parametrize(("name", "audio_format"), [("speech_en.webm", "WEBM_OPUS"), ("speech_en.ogg", "OGG_OPUS")])
async def test_container_audio_is_heard_before_the_rest_of_the_stream_arrives(
    start_server: StartServer, name: str, audio_format: str
) -> None:
    """The decoder hands on what has arrived instead of waiting for a full read buffer (32 KiB, many seconds of
    Opus): speech in the first part of a stream is reported while the client still holds back the rest."""
    server = await start_server()
    config = pb.TranscribeLiveRequest(
        live_config=pb.LiveConfig(
            audio_format=pb.LiveAudioFormat.Value(f"LIVE_AUDIO_FORMAT_{audio_format}"), voice_activity_events=True
        )
    )
    data = (DATA / name).read_bytes()
    heard = asyncio.Event()

    async def requests() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield config
        for start in range(0, len(data) // 2, 1000):
            yield pb.TranscribeLiveRequest(audio_content=data[start : min(start + 1000, len(data) // 2)])
        await asyncio.wait_for(heard.wait(), timeout=30)
        yield pb.TranscribeLiveRequest(audio_content=data[len(data) // 2 :])

    call = server.stub.TranscribeLive(requests())
    async for response in call:
        if response.voice_activity.type == pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN:
            heard.set()
    assert await call.code() == grpc.StatusCode.OK


async def test_audio_a_webm_stream_lost_is_heard_as_silence_and_later_offsets_stay_true(
    start_server: StartServer,
) -> None:
    """Damaged bytes in a WebM stream make the demuxer skip to the next cluster (here 2.4 s of audio into the first
    sentence, to 5 s): the lost audio is heard as silence, so the second sentence's final has the offsets it has in
    the intact stream instead of 2.6 s earlier."""
    server = await start_server()
    config = pb.TranscribeLiveRequest(live_config=pb.LiveConfig(audio_format=pb.LIVE_AUDIO_FORMAT_WEBM_OPUS))
    data = (DATA / "speech_en.webm").read_bytes()
    damaged = data[: len(data) // 4] + b"\x13\x37 not a cluster " * 100 + data[len(data) // 4 :]
    intact = finals(await responses(server.stub.TranscribeLive(stream(config, data, chunk=1000))))
    heard = finals(await responses(server.stub.TranscribeLive(stream(config, damaged, chunk=1000))))
    assert {"sells", "shore"} <= set(words(heard[-1].text)), heard
    for field in ("start_offset", "end_offset"):
        assert abs(seconds(getattr(heard[-1], field)) - seconds(getattr(intact[-1], field))) < 0.2, (heard, intact)


async def test_a_stream_without_a_language_is_recognized_in_the_one_detected_on_its_speech(
    start_server: StartServer,
) -> None:
    """With no language given, the multilingual model detects it on the speech heard so far. speech_fr.wav opens
    with "Bonjour." alone, too short to tell its language (alone it is detected as Japanese and comes back as a
    Japanese phrase): it waits for the next utterance, and the stream's one final is the French text, marked fr."""
    server = await start_server()
    config = live_config(config=pb.TranscriptionConfig(model="base"))
    results = finals(await responses(server.stub.TranscribeLive(stream(config, pcm_of("speech_fr.wav")))))
    assert [result.language_code for result in results] == ["fr"] * len(results)
    assert seconds(results[0].start_offset) == 0.0
    text = " ".join(result.text for result in results).lower()
    assert {"bonjour", "marie", "paris", "famille"} <= set(re.findall(r"\w+", text)), text


async def test_a_short_utterance_still_waiting_for_its_language_is_sent_when_the_stream_ends(
    start_server: StartServer,
) -> None:
    """A stream whose only speech is too short to tell its language still gets that speech as a final at its end."""
    server = await start_server()
    samples = decode_to_whisper_input(DATA / "speech_fr.wav")
    greeting = np.concatenate([samples[: round(0.9 * WHISPER_SAMPLE_RATE)], np.zeros(WHISPER_SAMPLE_RATE, np.float32)])
    config = live_config(config=pb.TranscriptionConfig(model="base"))
    results = finals(await responses(server.stub.TranscribeLive(stream(config, linear16(greeting)))))
    assert len(results) == 1
    assert results[0].text
    assert results[0].language_code
    assert seconds(results[0].start_offset) == 0.0


async def test_a_waiting_utterance_too_far_from_the_next_one_is_sent_on_its_own_first(
    start_server: StartServer,
) -> None:
    """An utterance waiting for its language is joined to the next one only when both fit in one window: after
    half a minute of silence the greeting is sent on its own, then the French sentence as a final of its own."""
    server = await start_server()
    samples = decode_to_whisper_input(DATA / "speech_fr.wav")
    greeting = round(0.93 * WHISPER_SAMPLE_RATE)
    silence = np.zeros(30 * WHISPER_SAMPLE_RATE, np.float32)
    config = live_config(config=pb.TranscriptionConfig(model="base"))
    audio = linear16(np.concatenate([samples[:greeting], silence, samples[greeting:]]))
    results = finals(await responses(server.stub.TranscribeLive(stream(config, audio, chunk=32000))))
    assert len(results) == 2
    assert seconds(results[0].start_offset) == 0.0
    assert seconds(results[0].end_offset) < 2.0
    assert seconds(results[1].start_offset) > 30.0
    assert results[1].language_code == "fr"
    assert {"marie", "paris"} <= set(re.findall(r"\w+", results[1].text.lower())), results[1].text


async def test_a_given_language_is_the_language_of_every_result(start_server: StartServer) -> None:
    """The language the config gives (a BCP-47 tag) is reported as its primary subtag on interims and finals."""
    server = await start_server()
    config = live_config(config=pb.TranscriptionConfig(model="base", language_code="es-MX"), interim_results=True)
    received = await responses(server.stub.TranscribeLive(stream(config, pcm_of("speech_es.wav"))))
    results = [result for response in received for result in response.results]
    assert [result.language_code for result in results] == ["es"] * len(results)
    text = " ".join(result.text for result in finals(received)).lower()
    assert {"buenos", "carlos", "familia"} <= set(re.findall(r"\w+", text)), text


class ContextNotingEngine(FasterWhisperEngine):
    """The real engine, noting the speech before each utterance it is asked to decode (it asks itself again, without
    that speech, when its text is in another language)."""

    def __init__(self) -> None:
        super().__init__(cache_dir=MODEL_CACHE, num_workers=1)
        self.given: list[SpokenBefore | None] = []

    def transcribe_utterance(
        self, model: Any, audio: np.ndarray, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """Note `before`, then decode as the real engine."""
        self.given.append(before)
        return super().transcribe_utterance(model, audio, request, before)


@pytest.mark.parametrize(("language", "text"), [("fr", "Bonjour."), ("en", "Hello.")])
async def test_the_speech_before_is_context_only_when_its_text_is_in_the_language_detected(
    language: str, text: str, tmp_path: Path
) -> None:
    """base detects French on speech_fr.wav's second sentence and the greeting before it; the greeting is heard as
    context when its text is French, and not when its text is in another language."""
    engine = ContextNotingEngine()
    backend = LocalBackend(engine=engine, specs=local_model_specs("base", MODEL_CACHE), default_model="base", workers=1)
    await backend.start()
    samples = decode_to_whisper_input(DATA / "speech_fr.wav")
    greeting = round(0.93 * WHISPER_SAMPLE_RATE)
    before = SpokenBefore(samples[:greeting], text, language)
    try:
        recognition = await backend.recognize(
            samples[greeting:], TranscriptionOptions(), interim=False, prompt="", scratch=tmp_path / "x", before=before
        )
    finally:
        await backend.aclose()
    assert recognition.language == "fr"
    assert engine.given == ([before] if language == "fr" else [before, None])
    heard = " ".join(segment.text for segment in recognition.segments).lower()
    assert {"marie", "famille"} <= set(re.findall(r"\w+", heard)), heard


class HeldEngine(FasterWhisperEngine):
    """The real engine; each decode waits until the test lets it go, and what it returned is noted."""

    def __init__(self) -> None:
        super().__init__(cache_dir=MODEL_CACHE, num_workers=1)
        self.entered = threading.Event()
        self.go = threading.Event()
        self.returned: queue.Queue[EngineResult] = queue.Queue()

    def transcribe_utterance(
        self, model: Any, audio: np.ndarray, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """Wait for the go, decode as the real engine, note the result."""
        self.entered.set()
        self.go.wait(30)
        result = super().transcribe_utterance(model, audio, request, before)
        self.returned.put(result)
        return result


async def test_a_live_decode_cancelled_while_it_runs_stops_once_its_audio_is_encoded(tmp_path: Path) -> None:
    """A speculative final is dropped when speech resumes, often while its worker is already decoding it: the decode
    then stops after encoding, without the beam search, and frees the worker for the next one."""
    engine = HeldEngine()
    backend = LocalBackend(
        engine=engine, specs=local_model_specs("tiny.en", MODEL_CACHE), default_model="tiny.en", workers=1
    )
    await backend.start()
    samples = decode_to_whisper_input(DATA / "speech_en.wav")

    def recognize() -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(
            backend.recognize(samples, TranscriptionOptions(), interim=False, prompt="", scratch=tmp_path / "x")
        )

    try:
        engine.go.set()
        heard = await recognize()
        assert "fox" in words(" ".join(segment.text for segment in heard.segments))
        assert engine.returned.get_nowait().segments == heard.segments
        engine.go.clear()
        engine.entered.clear()
        dropped = recognize()
        await asyncio.to_thread(engine.entered.wait, 30)
        dropped.cancel()
        engine.go.set()
        with pytest.raises(asyncio.CancelledError):
            await dropped
        stopped = await asyncio.to_thread(engine.returned.get, True, 30)
    finally:
        await backend.aclose()
    assert stopped.segments == ()


async def test_the_api_backend_gives_finals_per_utterance(
    start_server: StartServer, fake_openai: FakeOpenAIServer
) -> None:
    """With the API backend each utterance is sent as a small file and comes back as a final."""
    backend = openai_backend_for(fake_openai)
    server = await start_server(backends={BackendKind.OPENAI: backend}, default_backend="openai", openai_api_key="k")
    before = len(fake_openai.requests)
    received = await responses(server.stub.TranscribeLive(stream(live_config(), pcm_of("speech_en.wav"))))
    assert received[0].backend == pb.BACKEND_OPENAI
    results = finals(received)
    assert results
    assert all(r.text for r in results)
    assert len(fake_openai.requests) - before == len(results)
    assert all((req.file_name or "").endswith(".flac") for req in fake_openai.requests[before:])
    assert len(results) >= 2
    sent = fake_openai.requests[before:]
    assert sent[1].form["prompt"].endswith(results[0].text), "the API hears the previous final as its prompt"


def pauses_in(samples: np.ndarray, least_seconds: float = 0.0) -> list[tuple[int, int]]:
    """The runs of digital silence (|sample| < 0.001) inside a recording, at least `least_seconds` long."""
    quiet = np.abs(samples) < 1e-3
    runs: list[tuple[int, int]] = []
    start = None
    for index, silent in enumerate([*quiet.tolist(), False]):
        if silent and start is None:
            start = index
        elif not silent and start is not None:
            runs.append((start, index))
            start = None
    edge = WHISPER_SAMPLE_RATE
    least = least_seconds * WHISPER_SAMPLE_RATE
    return [run for run in runs if run[0] > edge and run[1] < len(samples) - edge and run[1] - run[0] >= least]


def sentences_of_speech_en() -> tuple[np.ndarray, np.ndarray]:
    """speech_en.wav cut in the middle of the longest pause: "The quick brown fox ..." and "She sells ..."."""
    samples = decode_to_whisper_input(DATA / "speech_en.wav")
    first, last = max(pauses_in(samples), key=lambda run: run[1] - run[0])
    cut = (first + last) // 2
    return samples[:cut], samples[cut:]


@pytest.fixture(scope="module")
def tiny_en() -> tuple[FasterWhisperEngine, Any]:
    """The faster-whisper engine and tiny.en, loaded once for the engine-level tests."""
    engine = FasterWhisperEngine(cache_dir=MODEL_CACHE, cpu_threads=1, num_workers=1)
    return engine, engine.load(local_model_specs("tiny.en", MODEL_CACHE)["tiny.en"])


@pytest.mark.parametrize("word_timestamps", [False, True])
def test_a_final_decoded_after_the_speech_before_it_says_only_what_follows(
    tiny_en: tuple[FasterWhisperEngine, Any], word_timestamps: bool
) -> None:
    """The engine hears the previous utterance as context and its text as the decoder's first words, and returns
    only the new utterance's words (with their times inside it when asked); left context too long for Whisper's
    window is dropped rather than cutting the utterance off."""
    engine, model = tiny_en
    first, second = sentences_of_speech_en()
    request = EngineRequest(
        language="en", task=Task.TRANSCRIBE, prompt="", temperature=None, word_timestamps=word_timestamps
    )
    said = "The quick brown fox jumps over the lazy dog."
    too_long = np.tile(first, 30 * WHISPER_SAMPLE_RATE // len(first) + 1)
    for before in (SpokenBefore(first, said), SpokenBefore(too_long, " ".join([said] * 6))):
        segments = engine.transcribe_utterance(model, second, request, before).segments
        heard = words(" ".join(segment.text for segment in segments))
        assert {"sells", "shore"} <= set(heard), heard
        assert not {"quick", "fox", "lazy", "dog"} & set(heard), heard
        timed = [word for segment in segments for word in segment.words]
        assert bool(timed) == word_timestamps
        assert all(0 <= word.start <= word.end <= len(second) / WHISPER_SAMPLE_RATE + 0.1 for word in timed)


def test_a_final_decoded_after_15_s_of_speech_writes_its_whole_utterance(
    tiny_en: tuple[FasterWhisperEngine, Any], spoken: dict[str, Fixture]
) -> None:
    """The fifth sentence of speech_en_pauses.ogg, cut as the endpointer cuts it, after the four before it (15 s,
    their text forced): the decode may write every word of it. A length limit that counted the forced words once
    ended it at "Turn left at the bakery"."""
    engine, model = tiny_en
    fixture = spoken["speech_en_pauses.ogg"]
    samples = decode_to_whisper_input(fixture.path)
    sentences = re.split(r"(?<=\.) ", fixture.text)
    pauses = pauses_in(samples, least_seconds=0.5)
    assert len(pauses) == len(sentences) - 1 == 5, pauses
    (_, start), (end, _) = pauses[3], pauses[4]
    utterance = samples[start - round(0.3 * WHISPER_SAMPLE_RATE) : end + round(0.4 * WHISPER_SAMPLE_RATE)]
    before = SpokenBefore(samples[: pauses[3][0]], " ".join(sentences[:4]))
    request = EngineRequest(language="en", task=Task.TRANSCRIBE, prompt="", temperature=None, word_timestamps=False)
    heard = words(engine.transcribe_utterance(model, utterance, request, before).text)
    assert heard[:2] == ["turn", "left"], heard
    assert heard[-2:] == ["more", "blocks"], heard


def test_asking_for_word_timings_does_not_change_a_final(
    tiny_en: tuple[FasterWhisperEngine, Any], spoken: dict[str, Fixture]
) -> None:
    """Each sentence of speech_en_pauses.ogg after the ones before it comes out the same with word timings as without,
    its words spelling out its text, in order, inside the utterance. Word timings once took a decode of the utterance
    alone, which heard "fixed the bicycle" as "My runner fixed my bicycle" and "northern bridge" as "northern
    ridge"."""
    engine, model = tiny_en
    fixture = spoken["speech_en_pauses.ogg"]
    samples = decode_to_whisper_input(fixture.path)
    pauses = pauses_in(samples, least_seconds=0.5)
    cuts = [0, *((first + last) // 2 for first, last in pauses), len(samples)]
    said: list[str] = []
    for start, end in itertools.pairwise(cuts):
        utterance = samples[start:end]
        before = (
            SpokenBefore(samples[max(0, start - 15 * WHISPER_SAMPLE_RATE) : start], " ".join(said)) if said else None
        )
        plain, timed = (
            engine.transcribe_utterance(
                model,
                utterance,
                EngineRequest(language="en", task=Task.TRANSCRIBE, prompt="", temperature=None, word_timestamps=asked),
                before,
            ).segments
            for asked in (False, True)
        )
        text = " ".join(segment.text.strip() for segment in plain)
        assert " ".join(segment.text.strip() for segment in timed) == text
        timings = [word for segment in timed for word in segment.words]
        assert "".join(word.text for word in timings).strip() == text
        edges = [edge for word in timings for edge in (word.start, word.end)]
        assert edges == sorted(edges), timings
        assert edges[0] >= 0
        assert edges[-1] <= len(utterance) / WHISPER_SAMPLE_RATE
        said.append(text)
    assert len(said) == 6


def test_a_final_after_forced_words_without_their_full_stop_starts_with_its_own_words(
    tiny_en: tuple[FasterWhisperEngine, Any],
) -> None:
    """Forced words that lack their closing punctuation make the decoder write it first: it is not put at the head
    of the next final, and a final of nothing but that punctuation is decoded again, alone."""
    engine, model = tiny_en
    first, second = sentences_of_speech_en()
    request = EngineRequest(language="en", task=Task.TRANSCRIBE, prompt="", temperature=None, word_timestamps=False)
    before = SpokenBefore(first, "The quick brown fox jumps over the lazy dog")
    whole = " ".join(
        segment.text for segment in engine.transcribe_utterance(model, second, request, before).segments
    ).strip()
    assert whole[:1].isalnum(), whole
    assert {"sells", "shore"} <= set(words(whole)), whole
    onset = second[: round(0.8 * WHISPER_SAMPLE_RATE)]
    start = " ".join(segment.text for segment in engine.transcribe_utterance(model, onset, request, before).segments)
    assert words(start) == ["she"], start


def test_a_final_after_forced_words_is_the_likeliest_hypothesis_per_written_token() -> None:
    """The beam's hypotheses after 17 forced tokens, as CTranslate2 scored them when the live clip's "Near the end of
    the journey the air changes." was decoded after the sentence before it: its own ranking (log-probability over a
    length that counts the forced tokens) picks the one that skips "Near" and "the air"; Whisper's, per written token,
    does not. With nothing forced the two rankings agree."""
    written = [(-2.796, 7), (-3.964, 10)]  # what each wrote: its log-probability and its length in tokens
    forced = 17
    sequences = [[0] * forced + [index + 1] * length for index, (_, length) in enumerate(written)]
    scores = [total / (forced + length) for total, length in written]
    assert max(range(2), key=scores.__getitem__) == 0
    assert written_after(forced, scores, sequences) == sequences[1][forced:]
    alone = [sequence[forced:] for sequence in sequences]
    for scores_alone in ([total / length for total, length in written], [-0.5, -0.2]):
        assert written_after(0, scores_alone, alone) == alone[max(range(2), key=scores_alone.__getitem__)]


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call."""
    info, _ = error_details(error)
    return str(info.reason)


async def fails(call: Any) -> grpc.aio.AioRpcError:
    """The error a live call ends with."""
    _, error = await until_error(call)
    return error


async def test_bad_live_streams_get_their_status(start_server: StartServer, fake_openai: FakeOpenAIServer) -> None:
    """Config missing, twice or late, bad framing, undecodable containers and bad fields each get their code."""
    server = await start_server(openai_api_key="k")
    pcm = pcm_of("speech_en.wav")[: 16000 * 2]

    async def twice() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        yield pb.TranscribeLiveRequest(audio_content=pcm[:3200])
        yield live_config()

    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (stream(None, pcm), grpc.StatusCode.INVALID_ARGUMENT, "STREAM_OUT_OF_ORDER"),
        (twice(), grpc.StatusCode.INVALID_ARGUMENT, "STREAM_OUT_OF_ORDER"),
        (stream(live_config(), pcm + b"\x01"), grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_TRUNCATED"),
        (stream(live_config(sample_rate_hertz=0), pcm), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"),
        (
            stream(pb.TranscribeLiveRequest(live_config=pb.LiveConfig()), pcm),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
        (
            stream(
                pb.TranscribeLiveRequest(live_config=pb.LiveConfig(audio_format=pb.LIVE_AUDIO_FORMAT_WEBM_OPUS)),
                b"definitely not webm " * 500,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "AUDIO_UNDECODABLE",
        ),
        (
            stream(live_config(interim_results=True, config=pb.TranscriptionConfig(backend=pb.BACKEND_OPENAI)), pcm),
            grpc.StatusCode.FAILED_PRECONDITION,
            "BACKEND_NOT_CONFIGURED",
        ),
        (
            stream(live_config(speech_end_timeout=Duration(seconds=30)), pcm),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
        (
            stream(live_config(speech_start_timeout=Duration(seconds=-1)), pcm),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
        (
            stream(
                live_config(
                    config=pb.TranscriptionConfig(
                        explicit_decoding_config=pb.ExplicitDecodingConfig(encoding=pb.AUDIO_ENCODING_LINEAR16)
                    )
                ),
                pcm,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONFIG",
        ),
    ]
    for requests, code, reason in cases:
        error = await fails(server.stub.TranscribeLive(requests))
        assert (error.code(), reason_of(error)) == (code, reason), error.details()
    assert server.live.gate.in_flight == 0


async def until_error(call: Any) -> tuple[list[pb.TranscribeLiveResponse], grpc.aio.AioRpcError]:
    """The responses of a live call that ends with an error, and that error."""
    received: list[pb.TranscribeLiveResponse] = []

    async def read() -> None:
        async for response in call:
            received.append(response)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read()
    return received, caught.value


def webm_jumping_ahead(path: Path, *, after: float, by: float) -> bytes:
    """The Opus audio of an Ogg file remuxed as WebM, the timestamps of its packets after `after` seconds moved
    `by` seconds later (as a stream that lost that much would show)."""
    out = io.BytesIO()
    with av.open(str(path)) as source, av.open(out, "w", format="webm") as target:
        audio = source.streams.audio[0]
        assert audio.time_base is not None
        shift = round(by / audio.time_base)
        remuxed = target.add_stream_from_template(audio)
        for packet in source.demux(audio):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * audio.time_base > after:
                packet.pts += shift
                packet.dts += shift
            packet.stream = remuxed
            target.mux(packet)
    return out.getvalue()


async def test_the_speech_before_a_fault_in_the_input_gets_its_finals_before_the_status(
    start_server: StartServer,
) -> None:
    """Six sentences sent faster than real time, then half a frame of LINEAR16: every sentence still comes back in
    a final, then AUDIO_TRUNCATED. The same speech as WebM whose timestamps jump 40 s ahead after 12 s: the finals
    of the speech before the jump, then AUDIO_UNDECODABLE. The same stream past a 15 s session limit: the finals of
    the speech before the limit, then LIVE_SESSION_TOO_LONG. An error once ended the stream at once, and the
    utterances still queued for decoding got no final."""
    server = await start_server()
    pcm = pcm_of("speech_en_pauses.ogg")
    received, error = await until_error(server.stub.TranscribeLive(stream(live_config(), pcm + b"\x01")))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_TRUNCATED")
    said = words(" ".join(result.text for result in finals(received)))
    assert {"hill", "bread", "wrench", "harbor", "blocks", "bridge"} <= set(said), said

    config = pb.TranscribeLiveRequest(live_config=pb.LiveConfig(audio_format=pb.LIVE_AUDIO_FORMAT_WEBM_OPUS))
    webm = webm_jumping_ahead(DATA / "speech_en_pauses.ogg", after=12.0, by=40.0)
    received, error = await until_error(server.stub.TranscribeLive(stream(config, *all_at_once(webm))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_UNDECODABLE")
    said = words(" ".join(result.text for result in finals(received)))
    assert {"hill", "bread"} <= set(said), said
    assert not {"blocks", "bridge"} & set(said), said

    server = await start_server(live_max_session_seconds=15)
    received, error = await until_error(server.stub.TranscribeLive(stream(live_config(), *all_at_once(pcm))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.OUT_OF_RANGE, "LIVE_SESSION_TOO_LONG")
    results = finals(received)
    said = words(" ".join(result.text for result in results))
    assert {"hill", "bread", "wrench"} <= set(said), said
    assert not {"blocks", "bridge"} & set(said), said
    assert all(seconds(result.end_offset) <= 15.1 for result in results)
    assert server.live.gate.in_flight == 0


async def test_bad_fields_are_named_by_their_path_in_the_live_request(start_server: StartServer) -> None:
    """BadRequest names each bad field by its path from TranscribeLiveRequest, those of the transcription config
    inside live_config too."""
    server = await start_server()
    pcm = pcm_of("speech_en.wav")[: 16000 * 2]
    cases = [
        (live_config(sample_rate_hertz=0), "live_config.sample_rate_hertz"),
        (live_config(config=pb.TranscriptionConfig(language_code="english!")), "live_config.config.language_code"),
        (live_config(config=pb.TranscriptionConfig(task=99)), "live_config.config.task"),  # type: ignore[arg-type]
        (
            live_config(config=pb.TranscriptionConfig(model="tiny.en", task=pb.TASK_TRANSLATE)),
            "live_config.config.task",
        ),
        (live_config(config=pb.TranscriptionConfig(temperature=2)), "live_config.config.temperature"),
    ]
    for config, field in cases:
        error = await fails(server.stub.TranscribeLive(stream(config, pcm)))
        _, violations = error_details(error)
        assert [name for name, _ in violations] == [field], (field, violations)


async def test_interim_results_need_a_local_backend(start_server: StartServer, fake_openai: FakeOpenAIServer) -> None:
    """Asking the API backend for interim results is refused before any audio is read."""
    server = await start_server(
        backends={BackendKind.OPENAI: openai_backend_for(fake_openai)}, default_backend="openai", openai_api_key="k"
    )
    error = await fails(server.stub.TranscribeLive(stream(live_config(interim_results=True), b"")))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.FAILED_PRECONDITION, "LIVE_NOT_SUPPORTED")


def all_at_once(audio: bytes) -> tuple[bytes, int]:
    """The audio as one message, so the client has half-closed before the server ends the call: a write still in
    flight then would make grpcio's asyncio client report INTERNAL instead of the status (grpc/grpc#36066)."""
    return audio, len(audio)


async def test_no_speech_before_the_start_timeout_ends_the_stream(start_server: StartServer) -> None:
    """A stream with only silence for longer than its speech start timeout ends with DEADLINE_EXCEEDED."""
    server = await start_server()
    config = live_config(speech_start_timeout=Duration(seconds=2))
    error = await fails(server.stub.TranscribeLive(stream(config, *all_at_once(bytes(16000 * 2 * 5)))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, "SPEECH_START_TIMEOUT")


async def test_a_session_longer_than_the_maximum_is_ended(start_server: StartServer) -> None:
    """Audio past live_max_session_seconds ends the stream with OUT_OF_RANGE."""
    server = await start_server(live_max_session_seconds=3)
    error = await fails(server.stub.TranscribeLive(stream(live_config(), *all_at_once(bytes(16000 * 2 * 5)))))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.OUT_OF_RANGE, "LIVE_SESSION_TOO_LONG")


async def test_a_silent_client_is_ended_by_the_idle_timeout(start_server: StartServer) -> None:
    """A client that sends nothing for longer than the stream idle timeout gets DEADLINE_EXCEEDED."""
    server = await start_server(stream_idle_timeout_seconds=0.5)
    hold = asyncio.Event()

    async def quiet() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        await hold.wait()

    try:
        error = await fails(server.stub.TranscribeLive(quiet()))
    finally:
        hold.set()
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, "STREAM_IDLE_TIMEOUT")


async def test_sessions_beyond_capacity_are_refused_at_once_and_cancelling_frees_a_place(
    start_server: StartServer,
) -> None:
    """With one place, a second stream gets RESOURCE_EXHAUSTED with RetryInfo; cancelling the first frees it."""
    server = await start_server(live_max_sessions=1)
    hold = asyncio.Event()

    async def open_ended() -> AsyncIterator[pb.TranscribeLiveRequest]:
        yield live_config()
        yield pb.TranscribeLiveRequest(audio_content=bytes(3200))
        await hold.wait()

    first = server.stub.TranscribeLive(open_ended())
    try:
        await first.read()
        assert server.live.gate.in_flight == 1
        error = await fails(server.stub.TranscribeLive(stream(live_config(), bytes(3200))))
        assert (error.code(), reason_of(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
        raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        assert isinstance(raw, bytes)
        status = status_pb2.Status.FromString(raw)
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        first.cancel()
        for _ in range(200):
            if server.live.gate.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert server.live.gate.in_flight == 0
        again = await responses(server.stub.TranscribeLive(stream(live_config(), bytes(3200))))
        assert again[0].model == "tiny.en"
    finally:
        hold.set()


class RecordingRecognizer:
    """The real local backend, noting how much audio each final decode was given and what it returned."""

    kind = BackendKind.LOCAL
    supports_interim = True

    def __init__(self, inner: LocalBackend[Any]) -> None:
        self.inner = inner
        self.default_model = inner.default_model
        self.finals: list[tuple[float, str]] = []

    def check(self, options: TranscriptionOptions) -> None:
        """As the real backend."""
        self.inner.check(options)

    async def recognize(
        self,
        samples: np.ndarray,
        options: TranscriptionOptions,
        *,
        interim: bool,
        prompt: str,
        scratch: Path,
        before: SpokenBefore | None = None,
    ) -> Recognition:
        """Recognize with the real backend; finals are noted once they are done."""
        recognition = await self.inner.recognize(
            samples, options, interim=interim, prompt=prompt, scratch=scratch, before=before
        )
        if not interim:
            self.finals.append((len(samples) / WHISPER_SAMPLE_RATE, " ".join(s.text for s in recognition.segments)))
        return recognition


async def live_finals(
    recognizer: RecordingRecognizer, samples: np.ndarray, tmp_path: Path, chunk: int = CHUNK
) -> list[LiveResult]:
    """The finals of one in-process live session fed the samples 100 ms at a time, or in pieces of `chunk` bytes (the
    session looks at each piece in turn, so in small pieces it sees every pause as it would at real-time pace)."""
    store = UploadStore(tmp_path)
    store.open()
    live = LiveTranscriber(
        store=store,
        backends={BackendKind.LOCAL: recognizer},
        default_backend=BackendKind.LOCAL,
        limits=LiveLimits(),
        retry_after_seconds=1.0,
    )
    options = LiveOptions(TranscriptionOptions(), LiveFormat.LINEAR16, RawPcmFormat(WHISPER_SAMPLE_RATE, 1))
    pcm = linear16(samples)
    try:
        async with live.session(options) as session:
            for offset in range(0, len(pcm), chunk):
                session.feed(pcm[offset : offset + chunk])
            await session.finish()
            results = [event async for event in session.events() if isinstance(event, LiveResult)]
    finally:
        store.close()
    return [result for result in results if result.is_final]


async def test_a_final_decoded_during_the_pause_that_ends_its_utterance_is_the_final(
    local_backend: LocalBackend[Any], tmp_path: Path
) -> None:
    """The local engine starts decoding a final 0.15 s into a pause; when the pause ends the utterance,
    that decode is the final (no second one), and it covers the whole utterance."""
    recognizer = RecordingRecognizer(local_backend)
    first, second = sentences_of_speech_en()
    finals = await live_finals(recognizer, np.concatenate([first, second]), tmp_path)
    assert len(finals) == 2
    assert len(recognizer.finals) == 2, "one decode per final"
    heard_first = recognizer.finals[0][0]
    assert heard_first < finals[0].end - finals[0].start, "decoded before the utterance was closed"
    assert {"fox", "dog"} <= set(words(finals[0].text))
    assert {"sells", "shore"} <= set(words(finals[1].text))


@pytest.mark.parametrize("name", ["speech_en.wav", "speech_en_pauses.ogg"])
async def test_the_same_audio_gets_the_same_finals_in_pieces_of_any_size(
    local_backend: LocalBackend[Any], tmp_path: Path, name: str
) -> None:
    """A final decodes the same audio, its utterance and 0.15 s of the pause after it, whether it was decoded during
    that pause (audio in 100 ms pieces, as at real-time pace) or once the pause had ended the utterance (the whole
    recording in one piece): the finals are the same. A final decoded after its pause once heard 0.4 s of it, and
    speech_en.wav's first sentence came out as "A quick brown fox" fed fast but "The quick brown fox" at real time."""
    samples = decode_to_whisper_input(DATA / name)
    paced, whole = RecordingRecognizer(local_backend), RecordingRecognizer(local_backend)
    paced_finals = await live_finals(paced, samples, tmp_path)
    whole_finals = await live_finals(whole, samples, tmp_path, chunk=2 * len(samples))
    assert paced.finals[0][0] < paced_finals[0].end - paced_finals[0].start, "decoded during its pause"
    assert paced.finals == whole.finals
    assert [final.text for final in paced_finals] == [final.text for final in whole_finals]


async def test_a_pause_that_speech_ends_early_drops_the_final_decoded_during_it(
    local_backend: LocalBackend[Any], tmp_path: Path
) -> None:
    """A pause longer than 0.15 s but shorter than the endpointing pause does not end the utterance: the
    decode started during it is dropped, and the final covers the speech on both sides of the pause."""
    recognizer = RecordingRecognizer(local_backend)
    first, second = sentences_of_speech_en()
    voiced = np.flatnonzero(np.abs(first) >= 1e-3)
    pause = np.zeros(round(0.4 * WHISPER_SAMPLE_RATE), dtype=np.float32)
    start_of_second = np.flatnonzero(np.abs(second) >= 1e-3)[0]
    finals = await live_finals(
        recognizer, np.concatenate([first[: voiced[-1] + 1], pause, second[start_of_second:]]), tmp_path
    )
    assert {"fox", "dog", "she", "sells"} <= set(words(finals[0].text)), finals
    assert "shore" in words(" ".join(final.text for final in finals)), finals

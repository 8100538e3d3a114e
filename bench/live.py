"""Live transcription: latency, accuracy, capacity, CPU and memory of TranscribeLive streams at real-time pace."""

from __future__ import annotations

import bisect
import difflib
import functools
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.common import (
    MIB,
    MODEL_CACHE,
    REPO,
    RssSampler,
    load_clips,
    percentile,
    proc_status_kib,
    say,
    spoken_fixtures,
    wav_of_pcm,
)
from bench.data import make_live_audio
from bench.data.make_live_audio import LiveAudio
from bench.server import ServerProcess
from bench.wer import edit_distance, words
from service.audio.decode import decode_to_whisper_input
from tests.helpers import linear16
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

RATE = 16_000
CHUNK_SECONDS = 0.1
CHUNK_BYTES = round(RATE * CHUNK_SECONDS) * 2
BYTES_PER_SECOND = RATE * 2
START_DELAY = 1.0
"""Seconds between opening the calls of a round and the moment its audio starts being spoken."""
SETTLE_SECONDS = 2.0
PROBE_AFTER = 5.0
"""When, into a round at capacity, the stream beyond capacity is opened."""
STAGGERS = (0.5, 1.7, 3.0)
"""Rounds at capacity whose streams start apart: stream i starts i times this many seconds after the first."""
BEYOND_CAPACITY = (6, 8)
"""Rounds of more streams than the default capacity, starting STAGGERS[1] s apart, in a server whose cap is raised
to let them in: how many streams the cores hold."""
CLIP_SECONDS = 60.0
NOISE_SECONDS = 60.0
NOISE_DBFS = -25.0
SILENCE_LSB = 2.0
WINDOW_BEFORE = 0.5
"""A result is aligned to the reference words ending at most this long before its start_offset ..."""
WINDOW_AFTER = 0.25
"""... and starting at most this long after its end_offset."""
WARM_UP_SECONDS = 10.0
UPLOAD_PIECE = 256 * 1024
_REFUSED = re.compile(r"TranscribeLive RESOURCE_EXHAUSTED ([0-9.]+)ms")


@dataclass(frozen=True)
class Heard:
    """One result as the client received it; times in seconds of the stream's clock (audio time 0 = t0)."""

    at: float
    text: str
    final: bool
    stability: float
    start: float
    end: float
    language: str = ""


@dataclass
class StreamRun:
    """What one live call sent and received."""

    audio_seconds: float
    heard: list[Heard] = field(default_factory=list)
    voice_events: int = 0
    opened: float = 0.0
    half_closed: float | None = None
    ended: float = 0.0
    code: str = "OK"
    details: str = ""
    retry_info: bool = False
    first_response: float | None = None
    late_max: float = 0.0
    model: str = ""


@dataclass(frozen=True)
class RefWord:
    """A word of the offline transcription with its time in the audio."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Reference:
    """The offline transcriptions of a recording: plain text for WER, words with their times for latency."""

    text: str
    words: tuple[RefWord, ...]
    seconds: float
    words_seconds: float

    @functools.cached_property
    def _ends(self) -> list[float]:
        return list(itertools.accumulate((w.end for w in self.words), max))

    @functools.cached_property
    def _starts(self) -> list[float]:
        return list(itertools.accumulate((w.start for w in self.words), max))

    def window(self, start: float, end: float) -> tuple[int, list[str]]:
        """The index of the first reference word that may belong to a result spanning start..end, and the words."""
        low = bisect.bisect_left(self._ends, start - WINDOW_BEFORE)
        high = bisect.bisect_right(self._starts, end + WINDOW_AFTER)
        return low, [w.word for w in self.words[low:high]]


def live_config(config: pb.TranscriptionConfig | None = None) -> pb.TranscribeLiveRequest:
    """Server defaults for endpointing (and for the model, unless config names one); interims and voice events on;
    16 kHz mono LINEAR16."""
    return pb.TranscribeLiveRequest(
        live_config=pb.LiveConfig(
            config=config or pb.TranscriptionConfig(),
            interim_results=True,
            voice_activity_events=True,
            audio_format=pb.LIVE_AUDIO_FORMAT_LINEAR16,
            sample_rate_hertz=RATE,
            audio_channel_count=1,
        )
    )


def seconds_of(duration: Any) -> float:
    """A google.protobuf.Duration in seconds."""
    return float(duration.seconds) + float(duration.nanos) / 1e9


def stream(
    stub: pb_grpc.TranscribeServiceStub,
    pcm: bytes,
    t0: float,
    *,
    paced: bool = True,
    cancel_when_accepted: bool = False,
    config: pb.TranscriptionConfig | None = None,
) -> StreamRun:
    """One live call: open it now, send audio chunk i when its last sample has been spoken (t0 + (i + 1) * 0.1 on the
    monotonic clock, never drifting), half-close after the last chunk, and note when every result arrives."""
    run = StreamRun(audio_seconds=len(pcm) / BYTES_PER_SECOND)
    stop = threading.Event()

    def requests() -> Iterator[pb.TranscribeLiveRequest]:
        yield live_config(config)
        for offset in range(0, len(pcm), CHUNK_BYTES):
            piece = pcm[offset : offset + CHUNK_BYTES]
            if paced:
                due = t0 + (offset + len(piece)) / BYTES_PER_SECOND
                while (wait := due - time.monotonic()) > 0:
                    if stop.wait(wait):
                        return
                run.late_max = max(run.late_max, time.monotonic() - due)
            if stop.is_set():
                return
            yield pb.TranscribeLiveRequest(audio_content=piece)
        run.half_closed = time.monotonic() - t0

    run.opened = time.monotonic() - t0
    call = stub.TranscribeLive(requests(), timeout=run.audio_seconds + 600)
    try:
        for response in call:
            at = time.monotonic() - t0
            if run.first_response is None:
                run.first_response = at
                run.model = response.model
                if cancel_when_accepted:
                    call.cancel()
                    break
            if response.HasField("voice_activity"):
                run.voice_events += 1
            run.heard.extend(
                Heard(
                    at=at,
                    text=result.text,
                    final=result.is_final,
                    stability=result.stability,
                    start=seconds_of(result.start_offset),
                    end=seconds_of(result.end_offset),
                    language=result.language_code,
                )
                for result in response.results
            )
    except grpc.RpcError as error:
        run.code = error.code().name if error.code() is not None else "UNKNOWN"
        run.details = error.details() or ""
        status = rpc_status.from_call(error)
        if status is not None:
            run.retry_info = any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    finally:
        stop.set()
        run.ended = time.monotonic() - t0
    if cancel_when_accepted and run.first_response is not None:
        run.code = "ACCEPTED"
    return run


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/PID/stat, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_alive(server: ServerProcess, during: str) -> None:
    """Raise, with the server's last log lines, when the server process is gone."""
    try:
        with open(f"/proc/{server.pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "X"
    if state in {"Z", "X"}:
        raise RuntimeError(f"the server exited during {during}:\n{server.log_tail()}")


def transcribe_file(
    stub: pb_grpc.TranscribeServiceStub, path: Path, *, word_times: bool, timeout: float = 7200
) -> pb.Transcript:
    """An offline transcription of a file streamed from disk (TranscribeStream), server defaults otherwise."""

    def pieces() -> Iterator[bytes]:
        with path.open("rb") as audio:
            while piece := audio.read(UPLOAD_PIECE):
                yield piece

    return upload(stub, pieces(), word_times=word_times, timeout=timeout)


def transcribe_pcm(
    stub: pb_grpc.TranscribeServiceStub, pcm: bytes, config: pb.TranscriptionConfig | None = None
) -> pb.Transcript:
    """An offline transcription of 16 kHz mono LINEAR16 samples, sent as a WAV file."""
    wav = wav_of_pcm(pcm)
    pieces = (wav[i : i + UPLOAD_PIECE] for i in range(0, len(wav), UPLOAD_PIECE))
    return upload(stub, pieces, word_times=False, config=config)


def upload(
    stub: pb_grpc.TranscribeServiceStub,
    pieces: Iterator[bytes],
    *,
    word_times: bool,
    timeout: float = 7200,
    config: pb.TranscriptionConfig | None = None,
) -> pb.Transcript:
    """The transcript of a file uploaded in pieces (TranscribeStream), server defaults unless config says."""
    asked = pb.TranscriptionConfig(enable_word_time_offsets=word_times)
    if config is not None:
        asked.MergeFrom(config)

    def requests() -> Iterator[pb.TranscribeStreamRequest]:
        yield pb.TranscribeStreamRequest(config=asked)
        for piece in pieces:
            yield pb.TranscribeStreamRequest(audio_content=piece)

    response: pb.TranscribeStreamResponse = stub.TranscribeStream(requests(), timeout=timeout)
    return response.transcript


def reference(server: ServerProcess, audio: LiveAudio, label: str) -> Reference:
    """Transcribe the recording offline twice in the server: as it is (for WER) and with word timings."""
    say(f"live: offline transcription of the {label} recording ({audio.duration / 60:.1f} min)")
    started = time.monotonic()
    plain = transcribe_file(server.stub, audio.path, word_times=False)
    plain_seconds = time.monotonic() - started
    started = time.monotonic()
    timed = transcribe_file(server.stub, audio.path, word_times=True)
    timed_seconds = time.monotonic() - started
    found = tuple(
        RefWord(part, seconds_of(word.start_offset), seconds_of(word.end_offset))
        for segment in timed.segments
        for word in segment.words
        for part in words(word.word)
    )
    say(f"live: offline {plain_seconds:.1f} s, with word timings {timed_seconds:.1f} s, {len(found)} words")
    return Reference(plain.text, found, plain_seconds, timed_seconds)


def matched(result: Heard, ref: Reference) -> list[int]:
    """The reference words a result contains: its words aligned (difflib) to the reference words around it."""
    low, window = ref.window(result.start, result.end)
    hypothesis = words(result.text)
    if not window or not hypothesis:
        return []
    blocks = difflib.SequenceMatcher(None, window, hypothesis, autojunk=False).get_matching_blocks()
    return [low + block.a + k for block in blocks for k in range(block.size)]


def analyse(run: StreamRun, ref: Reference, text: str, *, keep_interims: bool = True) -> dict[str, Any]:
    """Per-stream metrics: final, last-final and interim latencies, WER, words lost or repeated at utterance ends."""
    finals = [heard for heard in run.heard if heard.final]
    interims = [heard for heard in run.heard if not heard.final]
    first_seen: dict[int, float] = {}
    final_latencies: list[float] = []
    unmatched_finals = 0
    covered: list[list[int]] = []
    for heard in run.heard:
        indices = matched(heard, ref)
        for index in indices:
            first_seen[index] = min(first_seen.get(index, math.inf), heard.at)
        if heard.final:
            covered.append(indices)
            if indices:
                final_latencies.append(heard.at - ref.words[max(indices)].end)
            else:
                unmatched_finals += 1
    repeated = lost = 0
    examples: list[str] = []
    final_words = [set(indices) for indices in covered]
    everything = set().union(*final_words) if final_words else set()
    for before, after in itertools.pairwise([c for c in covered if c]):
        twice = set(before) & set(after)
        between = [i for i in range(max(before) + 1, min(after)) if i not in everything]
        repeated += len(twice)
        lost += len(between)
        if (twice or between) and len(examples) < 10:
            shown = range(max(0, max(before) - 2), min(len(ref.words), min(after) + 3))
            examples.append(
                " ".join(ref.words[i].word for i in shown)
                + f" (repeated: {[ref.words[i].word for i in sorted(twice)]}, "
                f"lost: {[ref.words[i].word for i in between]})"
            )
    hypothesis = " ".join(heard.text for heard in finals)
    reference_words = words(text)
    live_errors = edit_distance(reference_words, words(hypothesis))
    last_final = finals[-1].at - run.half_closed if finals and run.half_closed is not None else None
    return {
        "code": run.code,
        "details": run.details,
        "audio_seconds": run.audio_seconds,
        "first_response_seconds": None if run.first_response is None else run.first_response - run.opened,
        "half_closed_at": run.half_closed,
        "ended_at": run.ended,
        "send_late_max_seconds": run.late_max,
        "voice_events": run.voice_events,
        "finals": len(finals),
        "interims": len(interims),
        "final_latencies": final_latencies,
        "unmatched_finals": unmatched_finals,
        "last_final_after_half_close": last_final,
        "call_end_after_half_close": None if run.half_closed is None else run.ended - run.half_closed,
        "interim_latencies": [first_seen[i] - ref.words[i].end for i in sorted(first_seen)],
        "reference_words": len(ref.words),
        "words_never_shown": len(ref.words) - len(first_seen),
        "boundary_repeated_words": repeated,
        "boundary_lost_words": lost,
        "boundary_examples": examples,
        "words": len(reference_words),
        "errors": live_errors,
        "wer": live_errors / max(len(reference_words), 1),
        "text": hypothesis,
        "results": [
            {"at": round(h.at, 3), "final": h.final, "start": round(h.start, 3), "end": round(h.end, 3), "text": h.text}
            for h in run.heard
            if keep_interims or h.final
        ],
    }


def summary(streams: list[dict[str, Any]], offline_wer: float) -> dict[str, Any]:
    """p50/p95 over the utterances, words and streams of a set of analysed streams, and their pooled WER."""
    finals = [v for s in streams for v in s["final_latencies"]]
    interims = [v for s in streams for v in s["interim_latencies"]]
    last = [s["last_final_after_half_close"] for s in streams if s["last_final_after_half_close"] is not None]
    errors, total = sum(s["errors"] for s in streams), sum(s["words"] for s in streams)
    wer = errors / max(total, 1)
    return {
        "streams": len(streams),
        "ok": sum(s["code"] == "OK" for s in streams),
        "finals": sum(s["finals"] for s in streams),
        "final_p50": percentile(finals, 0.5),
        "final_p95": percentile(finals, 0.95),
        "final_max": max(finals, default=math.nan),
        "last_final_p50": percentile(last, 0.5),
        "last_final_p95": percentile(last, 0.95),
        "last_final_max": max(last, default=math.nan),
        "interim_p50": percentile(interims, 0.5),
        "interim_p95": percentile(interims, 0.95),
        "words_never_shown": sum(s["words_never_shown"] for s in streams),
        "reference_words": sum(s["reference_words"] for s in streams),
        "unmatched_finals": sum(s["unmatched_finals"] for s in streams),
        "boundary_repeated_words": sum(s["boundary_repeated_words"] for s in streams),
        "boundary_lost_words": sum(s["boundary_lost_words"] for s in streams),
        "wer": wer,
        "offline_wer": offline_wer,
        "wer_delta": wer - offline_wer,
        "send_late_max_seconds": max((s["send_late_max_seconds"] for s in streams), default=0.0),
    }


def level(
    server: ServerProcess,
    audio: LiveAudio,
    ref: Reference,
    *,
    offline_wer: float,
    streams: int,
    rounds: int,
    probe: bool,
    stagger: float = 0.0,
) -> dict[str, Any]:
    """`rounds` rounds of `streams` concurrent streams of the clip, all starting together (or stream i `stagger` x i
    seconds after the first); the server's CPU per round, and in the first round (when `probe`) one more stream
    opened PROBE_AFTER seconds in, which must be refused."""
    pcm = audio.pcm()
    analysed: list[dict[str, Any]] = []
    cpu: list[float] = []
    refusal: dict[str, Any] | None = None
    apart = f", starting {stagger:g} s apart" if stagger else ""
    for index in range(rounds):
        say(f"live: {streams} stream(s){apart}, round {index + 1}/{rounds}")
        time.sleep(SETTLE_SECONDS)
        before = cpu_seconds(server.pid)
        t0 = time.monotonic() + START_DELAY
        with ThreadPoolExecutor(max_workers=streams + 1) as pool:
            futures = [pool.submit(stream, server.stub, pcm, t0 + i * stagger) for i in range(streams)]
            extra = pool.submit(beyond, server.stub, pcm, t0 + PROBE_AFTER) if probe and index == 0 else None
            runs = [future.result() for future in futures]
            if extra is not None:
                probed = extra.result()
                refusal = {
                    "code": probed.code,
                    "details": probed.details,
                    "retry_info": probed.retry_info,
                    "seconds": probed.ended - probed.opened,
                    "server_handler_ms": _refusal_in_log(server.log_tail()),
                    "opened_after_seconds": PROBE_AFTER,
                }
                say(f"live: stream {streams + 1} got {probed.code} after {refusal['seconds'] * 1000:.0f} ms")
        cpu.append((cpu_seconds(server.pid) - before) / sum(run.audio_seconds for run in runs))
        analysed += [analyse(run, ref, audio.text) for run in runs]
        check_alive(server, f"a round of {streams} stream(s)")
        for done in analysed[-streams:]:
            if done["code"] != "OK":
                say(f"live: a stream ended with {done['code']}: {done['details']}")
    result = summary(analysed, offline_wer)
    say(
        f"live: {streams} stream(s){apart}: final p50 {result['final_p50']:.2f} s p95 {result['final_p95']:.2f} s, "
        f"last final p95 {result['last_final_p95']:.2f} s, interim p50 {result['interim_p50']:.2f} s, "
        f"WER {result['wer']:.1%} (offline {offline_wer:.1%}), CPU {max(cpu):.2f} s per audio s"
    )
    return {
        "level": streams,
        "stagger_seconds": stagger,
        "rounds": rounds,
        **result,
        "cpu_per_audio_second": cpu,
        "refusal": refusal,
        "stream_results": analysed,
    }


def beyond(stub: pb_grpc.TranscribeServiceStub, pcm: bytes, at: float) -> StreamRun:
    """At `at`, open one more stream than the server takes; it is cancelled at once if it is accepted."""
    time.sleep(max(0.0, at - time.monotonic()))
    return stream(stub, pcm, time.monotonic(), cancel_when_accepted=True)


def _refusal_in_log(log: str) -> float | None:
    """How long the server's handler took to refuse the last refused live call, from its call log line."""
    found = _REFUSED.findall(log)
    return float(found[-1]) if found else None


def pink_noise(seconds: float, dbfs: float, seed: int) -> bytes:
    """Steady pink (1/f) noise at an RMS level in dBFS, as LINEAR16 bytes."""
    rng = np.random.default_rng(seed)
    count = round(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    frequencies = np.fft.rfftfreq(count, 1 / RATE)
    spectrum[1:] /= np.sqrt(frequencies[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, count)
    noise *= 32767 * 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))
    return np.clip(np.round(noise), -32768, 32767).astype("<i2").tobytes()


def near_silence(seconds: float, seed: int) -> bytes:
    """A quiet room: white noise of SILENCE_LSB standard deviation (about -84 dBFS), as LINEAR16 bytes."""
    rng = np.random.default_rng(seed)
    samples = np.round(rng.standard_normal(round(seconds * RATE)) * SILENCE_LSB)
    return samples.astype("<i2").tobytes()


def no_speech(server: ServerProcess, seconds: float) -> dict[str, Any]:
    """A stream of near silence and one of steady pink noise at the same time: any text either yields."""
    say(f"live: {seconds:g} s of silence and of steady noise, two streams at once")
    signals = {"silence": near_silence(seconds, 1), "noise": pink_noise(seconds, NOISE_DBFS, 2)}
    time.sleep(SETTLE_SECONDS)
    before = cpu_seconds(server.pid)
    t0 = time.monotonic() + START_DELAY
    with ThreadPoolExecutor(max_workers=len(signals)) as pool:
        futures = {name: pool.submit(stream, server.stub, pcm, t0) for name, pcm in signals.items()}
        runs = {name: future.result() for name, future in futures.items()}
    check_alive(server, "the silence and noise streams")
    cpu = (cpu_seconds(server.pid) - before) / (seconds * len(signals))
    result: dict[str, Any] = {"seconds": seconds, "noise_dbfs": NOISE_DBFS, "cpu_per_audio_second": cpu}
    for name, run in runs.items():
        texts = [heard.text for heard in run.heard if heard.text.strip()]
        result[name] = {
            "code": run.code,
            "finals": sum(heard.final for heard in run.heard),
            "interims": sum(not heard.final for heard in run.heard),
            "words": sum(len(words(text)) for text in texts),
            "texts": texts,
        }
        say(f"live: {name}: {result[name]['words']} words ({run.code})")
    return result


def upload_limits(audio: LiveAudio) -> dict[str, str]:
    """Server settings raised to fit the long recording where the defaults are lower; nothing else changes."""
    from service.settings import Settings

    settings = Settings(model_cache_dir=MODEL_CACHE)
    overrides = {}
    size = audio.path.stat().st_size
    if settings.max_bytes_for("local") < size:
        overrides["local_max_audio_bytes"] = str(size + MIB)
    if settings.max_audio_seconds < audio.duration + 60:
        overrides["max_audio_seconds"] = str(math.ceil(audio.duration) + 60)
    if settings.live_max_session_seconds < audio.duration + 60:
        overrides["live_max_session_seconds"] = str(math.ceil(audio.duration) + 60)
    return overrides


def warm_up(server: ServerProcess, audio: LiveAudio) -> None:
    """The first seconds of the clip sent as fast as possible, so the first measured stream does not load anything."""
    pcm = audio.pcm()[: round(WARM_UP_SECONDS * BYTES_PER_SECOND)]
    run = stream(server.stub, pcm, time.monotonic(), paced=False)
    say(f"live: warm-up stream {run.code}, {sum(h.final for h in run.heard)} final(s)")


def memory(audio: LiveAudio, clip: LiveAudio) -> dict[str, Any]:
    """One long stream in a fresh server: its RSS after the first minute and at the end, CPU, latencies and WER."""
    overrides = upload_limits(audio)
    with ServerProcess(overrides) as server:
        warm_up(server, clip)
        time.sleep(SETTLE_SECONDS)
        pcm = audio.pcm()
        say(f"live: one {audio.duration / 60:.1f}-minute stream at real-time pace (memory, CPU)")
        rss_idle = proc_status_kib(server.pid, "VmRSS") * 1024
        before = cpu_seconds(server.pid)
        t0 = time.monotonic() + START_DELAY
        with RssSampler(server.pid, 1.0) as sampler:
            run = stream(server.stub, pcm, t0)
            check_alive(server, "the long stream")
            rss_end = proc_status_kib(server.pid, "VmRSS") * 1024
        cpu = (cpu_seconds(server.pid) - before) / run.audio_seconds
        minutes = int(audio.duration // 60)
        by_minute = [max(sampler.between(t0 + 60 * m, t0 + 60 * m + 5), default=None) for m in range(1, minutes + 1)]
        rss_first_minute = by_minute[0] if by_minute and by_minute[0] is not None else rss_idle
        say(
            f"live: long stream {run.code}; RSS {rss_first_minute / MIB:.0f} MiB after the first minute, "
            f"{rss_end / MIB:.0f} MiB at the end; CPU {cpu:.2f} s per audio s"
        )
        ref = reference(server, audio, "long")
    offline_wer = edit_distance(words(audio.text), words(ref.text)) / max(len(words(audio.text)), 1)
    analysed = analyse(run, ref, audio.text, keep_interims=False)
    result = summary([analysed], offline_wer)
    say(
        f"live: long stream: final p50 {result['final_p50']:.2f} s, interim p50 {result['interim_p50']:.2f} s, "
        f"WER {result['wer']:.1%} (offline {offline_wer:.1%})"
    )
    return {
        "recording": _recording(audio),
        "server_overrides": overrides,
        "rss_idle_bytes": rss_idle,
        "rss_first_minute_bytes": rss_first_minute,
        "rss_end_bytes": rss_end,
        "rss_growth": rss_end / rss_first_minute - 1,
        "rss_by_minute_bytes": by_minute,
        "cpu_per_audio_second": cpu,
        "offline_seconds": ref.seconds,
        **result,
        "stream": analysed,
    }


ACCURACY_FIXTURES = ("speech_en.wav", "speech_en_60s.ogg", "speech_en_pauses.ogg")
"""The spoken test fixtures whose live finals are compared with offline (tests/data/fixtures.json)."""
ACCURACY_LIVE_SECONDS = (120.0, 300.0)
"""Generated live recordings (varied voices, natural pauses) compared besides the clip."""
LEAD_INS = (0.0, 0.1, 0.2, 0.3, 0.5)
LANGUAGE_MODEL = "base"
LANGUAGE_FIXTURES = ("speech_fr.wav", "speech_es.wav")
LANGUAGE_ROUNDS = 3
"""Seconds of silence put before each compared recording. Nobody would hear the difference, yet it moves where
Whisper's 30 s windows fall offline and where utterances start and end live, so the spread of the errors over these
shows how much of a difference between two transcriptions is chance."""


def accuracy_recordings() -> list[tuple[Path, str]]:
    """The recordings whose live finals are compared with offline: the live clip, the spoken test fixtures, the
    benchmark's one-voice clips and generated live recordings of 2 and 5 minutes; each with its exact text."""
    live_clip = make_live_audio.ensure(CLIP_SECONDS)
    fixtures = spoken_fixtures()
    chosen = [(live_clip.path, live_clip.text)]
    chosen += [(REPO / "tests" / "data" / name, str(fixtures[name]["text"])) for name in ACCURACY_FIXTURES]
    chosen += [(clip.path, clip.text) for clip in load_clips().values()]
    for seconds in ACCURACY_LIVE_SECONDS:
        audio = make_live_audio.ensure(seconds)
        chosen.append((audio.path, audio.text))
    return chosen


def accuracy(server: ServerProcess, recordings: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    """Each recording offline and as one live stream fed as fast as the server takes it (utterances are cut by voice
    activity alone, so the pace changes only whether a final was started during its pause), as it is and after each
    lead-in of silence; both get the same 16-bit samples."""
    rows = []
    for path, text in recordings:
        expected = words(text)
        samples = decode_to_whisper_input(path)
        runs: list[dict[str, Any]] = []
        for lead_in in LEAD_INS:
            padded = np.concatenate([np.zeros(round(lead_in * RATE), dtype=np.float32), samples])
            pcm = linear16(padded)
            offline = transcribe_pcm(server.stub, pcm).text
            run = stream(server.stub, pcm, time.monotonic(), paced=False)
            live_text = " ".join(heard.text for heard in run.heard if heard.final)
            runs.append(
                {
                    "lead_in_seconds": lead_in,
                    "code": run.code,
                    "errors": edit_distance(expected, words(live_text)),
                    "offline_errors": edit_distance(expected, words(offline)),
                    "text": live_text,
                    "offline_text": offline,
                }
            )
        first = runs[0]
        live_errors = [r["errors"] for r in runs]
        offline_errors = [r["offline_errors"] for r in runs]
        say(
            f"live: accuracy {path.name}, {len(expected)} words: errors live {live_errors}, offline {offline_errors} "
            f"(lead-ins {', '.join(f'{s:g}' for s in LEAD_INS)} s)"
        )
        rows.append(
            {
                "file": str(path.relative_to(REPO)),
                "audio_seconds": len(samples) / RATE,
                "words": len(expected),
                "code": first["code"],
                "errors": first["errors"],
                "offline_errors": first["offline_errors"],
                "wer": first["errors"] / len(expected),
                "offline_wer": first["offline_errors"] / len(expected),
                "mean_wer": sum(live_errors) / len(runs) / len(expected),
                "offline_mean_wer": sum(offline_errors) / len(runs) / len(expected),
                "text": first["text"],
                "offline_text": first["offline_text"],
                "lead_ins": runs[1:],
            }
        )
    return rows


def short_clips(server: ServerProcess) -> dict[str, Any]:
    """The short clips, each one stream and one offline transcription as accuracy() sends them, pooled as one row:
    a lone short utterance is heard with nothing before it, where a live final differs most from offline."""
    clips = make_live_audio.ensure_short()
    return pooled(accuracy(server, [(clip.path, clip.text) for clip in clips]), make_live_audio.short_folder())


def pooled(rows: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Rows of accuracy() as one: words, seconds and errors summed, run by run."""
    total = sum(row["words"] for row in rows)
    lead_ins = [
        {
            "lead_in_seconds": run["lead_in_seconds"],
            "errors": sum(row["lead_ins"][index]["errors"] for row in rows),
            "offline_errors": sum(row["lead_ins"][index]["offline_errors"] for row in rows),
        }
        for index, run in enumerate(rows[0]["lead_ins"])
    ]
    errors, offline_errors = (sum(row[key] for row in rows) for key in ("errors", "offline_errors"))
    runs = len(lead_ins) + 1
    return {
        "file": f"{folder.relative_to(REPO)}/*.wav",
        "pooled_recordings": len(rows),
        "audio_seconds": sum(row["audio_seconds"] for row in rows),
        "words": total,
        "code": next((row["code"] for row in rows if row["code"] != "OK"), "OK"),
        "errors": errors,
        "offline_errors": offline_errors,
        "wer": errors / total,
        "offline_wer": offline_errors / total,
        "mean_wer": (errors + sum(run["errors"] for run in lead_ins)) / runs / total,
        "offline_mean_wer": (offline_errors + sum(run["offline_errors"] for run in lead_ins)) / runs / total,
        "lead_ins": lead_ins,
        "recordings": rows,
    }


def languages(server: ServerProcess) -> list[dict[str, Any]]:
    """Each non-English spoken fixture on the multilingual model, one stream at a time at real-time pace, with no
    language (the stream detects it) and with its language given: the finals, the languages they are marked with,
    how long after its end offset each final arrived, and the offline transcription with the same config."""
    fixtures = spoken_fixtures()
    rows = []
    for name in LANGUAGE_FIXTURES:
        fixture = fixtures[name]
        pcm = linear16(decode_to_whisper_input(REPO / "tests" / "data" / name))
        expected = words(str(fixture["text"]))
        for given in ("", str(fixture["language"])):
            config = pb.TranscriptionConfig(model=LANGUAGE_MODEL, language_code=given)
            offline = transcribe_pcm(server.stub, pcm, config).text
            runs = [stream(server.stub, pcm, time.monotonic(), config=config) for _ in range(LANGUAGE_ROUNDS)]
            finals = [[heard for heard in run.heard if heard.final] for run in runs]
            delays = sorted(heard.at - heard.end for run in finals for heard in run)
            texts = [" ".join(heard.text for heard in run) for run in finals]
            row = {
                "file": f"tests/data/{name}",
                "model": LANGUAGE_MODEL,
                "audio_seconds": len(pcm) / BYTES_PER_SECOND,
                "language": fixture["language"],
                "language_given": given,
                "codes": [run.code for run in runs],
                "finals": [[heard.text for heard in run] for run in finals],
                "languages_marked": sorted({heard.language for run in finals for heard in run}),
                "errors": [edit_distance(expected, words(text)) for text in texts],
                "offline_errors": edit_distance(expected, words(offline)),
                "words": len(expected),
                "offline_text": offline,
                "final_after_end_p50": percentile(delays, 0.5),
                "final_after_end_max": delays[-1],
            }
            say(
                f"live: {name} on {LANGUAGE_MODEL}, language {given or 'detected'}: finals {row['finals'][0]} "
                f"marked {row['languages_marked']}, errors {row['errors']} (offline {row['offline_errors']}), "
                f"final after its end p50 {row['final_after_end_p50']:.2f} s"
            )
            rows.append(row)
    return rows


def _recording(audio: LiveAudio) -> dict[str, Any]:
    return {
        "file": str(audio.path.relative_to(REPO)),
        "audio_seconds": audio.duration,
        "words": len(words(audio.text)),
        "sentences": len(audio.sentences),
        "generated_now": audio.generated_now,
        "generation_seconds": audio.generation_seconds if audio.generated_now else None,
    }


def run(
    *, minutes: float, rounds: dict[int, int], noise_seconds: float = NOISE_SECONDS, keep_long: Path | None = None
) -> dict[str, Any]:
    """Latency, accuracy and CPU at each level of concurrency, the refusal beyond capacity, silence and noise, then
    memory over one `minutes`-long stream in a fresh server (or, given `keep_long`, that file's long stream)."""
    clip = make_live_audio.ensure(CLIP_SECONDS)
    say(f"live: the {minutes:g}-minute recording (made on first use in {make_live_audio.folder(minutes * 60)})")
    long = make_live_audio.ensure(minutes * 60) if keep_long is None else clip
    from service.settings import Settings

    defaults = Settings(model_cache_dir=MODEL_CACHE)
    settings = {
        "live_max_sessions": defaults.live_max_sessions,
        "live_workers": defaults.live_workers,
        "live_speech_end_seconds": defaults.live_speech_end_seconds,
        "live_interim_interval_seconds": defaults.live_interim_interval_seconds,
        "local_model": defaults.local_model,
    }
    with ServerProcess() as server:
        warm_up(server, clip)
        ref = reference(server, clip, "clip")
        clip_words = words(clip.text)
        offline_wer = edit_distance(clip_words, words(ref.text)) / len(clip_words)
        say(f"live: offline WER on the clip {offline_wer:.1%}")

        def apart(on: ServerProcess, streams: int, seconds: float) -> dict[str, Any]:
            return level(
                on, clip, ref, offline_wer=offline_wer, streams=streams, rounds=1, probe=False, stagger=seconds
            )

        levels = [
            level(
                server,
                clip,
                ref,
                offline_wer=offline_wer,
                streams=streams,
                rounds=count,
                probe=streams == defaults.live_max_sessions,
            )
            for streams, count in rounds.items()
        ]
        staggered = [apart(server, defaults.live_max_sessions, seconds) for seconds in STAGGERS]
        quiet = no_speech(server, noise_seconds)
        compared = [*accuracy(server, accuracy_recordings()), short_clips(server)]
        spoken = languages(server)
    with ServerProcess({"live_max_sessions": str(max(BEYOND_CAPACITY))}) as server:
        warm_up(server, clip)
        beyond_capacity = [apart(server, streams, STAGGERS[1]) for streams in BEYOND_CAPACITY]
    kept = json.loads(keep_long.read_text())["result"]["long"] if keep_long is not None else None
    long_run = kept if kept is not None else memory(long, clip)
    return {
        "chunk_seconds": CHUNK_SECONDS,
        "settings": settings,
        "clip": {**_recording(clip), "offline_wer": offline_wer, "offline_text": ref.text},
        "levels": levels,
        "staggered": staggered,
        "beyond_capacity": beyond_capacity,
        "beyond_capacity_max_sessions": max(BEYOND_CAPACITY),
        "no_speech": quiet,
        "accuracy": compared,
        "languages": spoken,
        "long": long_run,
        "long_kept_from_earlier_run": kept is not None,
    }


def long_only(minutes: float, previous: Path) -> dict[str, Any]:
    """The long stream alone (memory, CPU, its latencies and WER) in a fresh server, put in place of the long
    stream of the last live results, whose levels are kept as they were measured."""
    earlier: dict[str, Any] = json.loads(previous.read_text())["result"]
    clip = make_live_audio.ensure(CLIP_SECONDS)
    long = make_live_audio.ensure(minutes * 60)
    return {**earlier, "long": memory(long, clip), "long_measured_apart": True, "long_kept_from_earlier_run": False}

"""Lone calls: one streamed clip at a time against openai-whisper beam 5, and 4 concurrent streamed calls against 1."""

from __future__ import annotations

import time
from typing import Any

from bench import concurrency, engines
from bench.common import Clip, median, percentile, say
from bench.server import ServerProcess, streaming
from bench.wer import word_error_rate

REFERENCE = next(config for config in engines.CONFIGS if config.key == "openai-whisper-fp32-beam5")
SETTLE_SECONDS = 1.0


def run(clip: Clip, calls: int, reference_repeats: int, requests: dict[int, int]) -> dict[str, Any]:
    """The reference engine on the clip, then `calls` lone streamed calls and each {clients: requests} level."""
    say(f"lone: {REFERENCE.label} on the {clip.name} clip ({reference_repeats} timed run(s) after a warm-up)")
    result = engines.run_one(REFERENCE, clip, reference_repeats)
    reference = {**engines.summarize(result, clip), "runs": len(result["transcribe_seconds"])}
    say(f"lone: reference {reference['real_time_factor']:.1f}x real time, WER {reference['wer']:.1%}")
    content = clip.path.read_bytes()
    times: list[float] = []
    texts: list[str] = []
    levels = []
    with ServerProcess() as server:
        stub = server.stub
        say(f"lone: warm-up streamed call on the {clip.name} clip")
        streaming(stub, content)
        for index in range(calls):
            time.sleep(SETTLE_SECONDS)
            started = time.perf_counter()
            texts.append(streaming(stub, content).text)
            times.append(time.perf_counter() - started)
            say(f"lone: call {index + 1}/{calls}: {times[-1]:.2f} s, {clip.duration / times[-1]:.1f}x real time")
        for clients, count in requests.items():
            time.sleep(SETTLE_SECONDS)
            say(f"lone: {clients} concurrent client(s), {count} streamed calls of the {clip.name} clip")
            measured = concurrency.level(server, content, clients, count, streaming)
            latencies = measured["latencies"]
            levels.append(
                {
                    "clients": clients,
                    "requests": count,
                    "wall_seconds": measured["wall_seconds"],
                    "throughput": count * clip.duration / measured["wall_seconds"],
                    "latency_p50": percentile(latencies, 0.5),
                    "latency_p95": percentile(latencies, 0.95),
                    "latencies": latencies,
                    "wer_median": median([word_error_rate(clip.text, text) for text in measured["texts"]]),
                }
            )
            say(f"lone: {clients} client(s): {levels[-1]['throughput']:.1f}x real time")
    seconds = median(times)
    throughput = {row["clients"]: row["throughput"] for row in levels}
    return {
        "clip": clip.name,
        "audio_seconds": clip.duration,
        "calls": calls,
        "seconds": times,
        "median_seconds": seconds,
        "real_time_factor": clip.duration / seconds,
        "wer": median([word_error_rate(clip.text, text) for text in texts]),
        "reference": reference,
        "speedup": clip.duration / seconds / reference["real_time_factor"],
        "levels": levels,
        "concurrency_gain": throughput[4] / throughput[1] if 1 in throughput and 4 in throughput else None,
        "server_startup_seconds": server.startup_seconds,
    }

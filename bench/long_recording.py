"""Long recordings: server peak memory, throughput and WER on a long recording against 5-minute ones."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench.common import MIB, MODEL_CACHE, REPO, RssSampler, load_clips, proc_status_kib, say
from bench.data import make_long_audio
from bench.data.make_long_audio import LongAudio
from bench.server import ServerProcess, streaming_file
from bench.wer import edit_distance, word_error_rate, words

SETTLE_SECONDS = 1.0
SAMPLE_SECONDS = 0.25


def limits(audio: LongAudio) -> dict[str, str]:
    """Upload limits raised to fit the long recording where the server's defaults are lower; nothing else changes."""
    from service.settings import Settings

    settings = Settings(model_cache_dir=MODEL_CACHE)
    overrides = {}
    size = audio.path.stat().st_size
    if settings.max_bytes_for("local") < size:
        overrides["local_max_audio_bytes"] = str(size + MIB)
    if settings.max_audio_seconds < audio.duration + 60:
        overrides["max_audio_seconds"] = str(math.ceil(audio.duration) + 60)
    return overrides


def call(server: ServerProcess, path: Path, duration: float) -> dict[str, Any]:
    """One streamed call: wall time, text, the server's RSS before, sampled during, at the end, and its VmHWM after."""
    rss_before = proc_status_kib(server.pid, "VmRSS") * 1024
    with RssSampler(server.pid, SAMPLE_SECONDS) as sampler:
        start = time.monotonic()
        text = streaming_file(server.stub, path, timeout=max(3600.0, 2 * duration)).text
        end = time.monotonic()
    tenths = [sampler.between(start + (end - start) * i / 10, start + (end - start) * (i + 1) / 10) for i in range(10)]
    return {
        "file": path.name,
        "audio_seconds": duration,
        "seconds": end - start,
        "throughput": duration / (end - start),
        "text": text,
        "rss_before_bytes": rss_before,
        "rss_peak_sampled_bytes": max(sampler.between(start, end), default=rss_before),
        "rss_by_tenth_bytes": [max(tenth, default=None) for tenth in tenths],
        "rss_after_bytes": proc_status_kib(server.pid, "VmRSS") * 1024,
        "vmhwm_after_bytes": proc_status_kib(server.pid, "VmHWM") * 1024,
    }


def run(minutes: float) -> dict[str, Any]:
    """The 5-minute clip then every 5-minute cut in one fresh server, the long recording alone in another."""
    say(f"long: the {minutes:g}-minute recording (made on first use in {make_long_audio.GENERATED})")
    audio = make_long_audio.ensure(minutes)
    if audio.generated_now:
        say(
            f"long: generated {audio.duration / 60:.1f} min of audio in {audio.generation_seconds:.0f} s "
            f"({audio.duration / audio.generation_seconds:.0f}x real time)"
        )
    clip = load_clips()["5min"]
    overrides = limits(audio)
    with ServerProcess(overrides) as server:
        idle_short = proc_status_kib(server.pid, "VmHWM") * 1024
        say(f"long: the {clip.name} clip in a fresh server")
        short = call(server, clip.path, clip.duration)
        say(f"long: {short['throughput']:.1f}x real time, VmHWM {short['vmhwm_after_bytes'] / MIB:.0f} MiB")
        cuts = []
        for index, cut in enumerate(audio.cuts):
            time.sleep(SETTLE_SECONDS)
            cuts.append(call(server, cut.path, cut.duration))
            say(f"long: cut {index + 1}/{len(audio.cuts)}: {cuts[-1]['throughput']:.1f}x real time")
    with ServerProcess(overrides) as server:
        idle_long = proc_status_kib(server.pid, "VmHWM") * 1024
        say(f"long: the {audio.duration / 60:.1f}-minute recording in a fresh server")
        long = call(server, audio.path, audio.duration)
        say(f"long: {long['throughput']:.1f}x real time, VmHWM {long['vmhwm_after_bytes'] / MIB:.0f} MiB")

    say("long: word error rates")
    reference = words(audio.text)
    long_errors = edit_distance(reference, words(long["text"]))
    cut_words = [len(words(cut.text)) for cut in audio.cuts]
    cut_errors = [edit_distance(words(cut.text), words(run["text"])) for cut, run in zip(audio.cuts, cuts, strict=True)]
    long_wer = long_errors / len(reference)
    cuts_wer = sum(cut_errors) / sum(cut_words)
    cuts_throughput = sum(run["audio_seconds"] for run in cuts) / sum(run["seconds"] for run in cuts)
    return {
        "minutes": minutes,
        "server_overrides": overrides,
        "sample_seconds": SAMPLE_SECONDS,
        "recording": {
            "file": str(audio.path.relative_to(REPO)),
            "audio_seconds": audio.duration,
            "bytes": audio.path.stat().st_size,
            "words": len(reference),
            "cuts": len(audio.cuts),
            "generated_now": audio.generated_now,
            "generation_seconds": audio.generation_seconds if audio.generated_now else None,
        },
        "short": {
            "clip": clip.name,
            "idle_vmhwm_bytes": idle_short,
            **short,
            "wer": word_error_rate(clip.text, short["text"]),
            "vmhwm_after_cuts_bytes": max(run["vmhwm_after_bytes"] for run in cuts),
        },
        "long": {"idle_vmhwm_bytes": idle_long, **long, "errors": long_errors},
        "cuts": [
            {**run, "errors": errors, "words": count}
            for run, errors, count in zip(cuts, cut_errors, cut_words, strict=True)
        ],
        "memory_ratio": long["vmhwm_after_bytes"] / short["vmhwm_after_bytes"],
        "cuts_throughput": cuts_throughput,
        "throughput_ratio": long["throughput"] / cuts_throughput,
        "long_wer": long_wer,
        "cuts_wer": cuts_wer,
        "wer_delta": long_wer - cuts_wer,
    }

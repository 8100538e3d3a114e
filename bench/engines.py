"""Engines on the same clips: speed, word error rate, peak memory and load time, one process per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.common import REPO, Clip, median, say
from bench.engine_worker import EngineConfig

CORES = os.cpu_count() or 1

CONFIGS = (
    EngineConfig(
        key="openai-whisper-fp32-beam5",
        label="openai-whisper fp32, beam 5",
        engine="openai-whisper",
        mode="sequential",
        beam_size=5,
        batch_size=1,
        threads=CORES,
        compute_type="fp32",
    ),
    EngineConfig(
        key="faster-whisper-int8-beam5",
        label="faster-whisper int8, beam 5, sequential",
        engine="faster-whisper",
        mode="sequential",
        beam_size=5,
        batch_size=1,
        threads=CORES,
        compute_type="int8",
    ),
    EngineConfig(
        key="faster-whisper-int8-beam5-batch8",
        label="faster-whisper int8, beam 5, batched 8",
        engine="faster-whisper",
        mode="batched",
        beam_size=5,
        batch_size=8,
        threads=CORES,
        compute_type="int8",
    ),
    EngineConfig(
        key="faster-whisper-int8-beam1-batch8",
        label="faster-whisper int8, beam 1, batched 8",
        engine="faster-whisper",
        mode="batched",
        beam_size=1,
        batch_size=8,
        threads=CORES,
        compute_type="int8",
    ),
    EngineConfig(
        key="faster-whisper-int8-beam5-batch8-1thread",
        label="faster-whisper int8, beam 5, batched 8, 1 thread (the server's per-request default)",
        engine="faster-whisper",
        mode="batched",
        beam_size=5,
        batch_size=8,
        threads=1,
        compute_type="int8",
    ),
)


def run_one(config: EngineConfig, clip: Clip, repeats: int) -> dict[str, Any]:
    """Run one configuration on one clip in a fresh interpreter; its JSON result."""
    job = {"config": config.to_json(), "clip": str(clip.path), "reference": clip.text, "repeats": repeats}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.engine_worker", json.dumps(job)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def summarize(result: dict[str, Any], clip: Clip) -> dict[str, Any]:
    """The numbers the report shows, from one worker result."""
    seconds = median(result["transcribe_seconds"])
    return {
        "key": result["config"]["key"],
        "label": result["config"]["label"],
        "clip": clip.name,
        "audio_seconds": result["audio_seconds"],
        "median_seconds": seconds,
        "real_time_factor": result["audio_seconds"] / seconds,
        "wer": median(result["wer"]),
        "load_seconds": result["load_seconds"],
        "peak_rss_bytes": result["peak_rss_bytes"],
    }


def run(clips: list[Clip], repeats: dict[str, int], configs: tuple[EngineConfig, ...] = CONFIGS) -> dict[str, Any]:
    """Every configuration on every clip; raw worker results plus a summary row for each pair."""
    raw, rows = [], []
    for clip in clips:
        for config in configs:
            count = repeats[clip.name]
            say(f"engines: {config.label} on the {clip.name} clip ({count} timed run(s) after a warm-up)")
            result = run_one(config, clip, count)
            row = summarize(result, clip)
            say(
                f"engines: {row['real_time_factor']:.1f}x real time, WER {row['wer']:.1%}, "
                f"peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB, load {row['load_seconds']:.2f} s"
            )
            raw.append({"clip": clip.name, **result})
            rows.append(row)
    return {"rows": rows, "runs": raw}

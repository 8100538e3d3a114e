"""Shared pieces of the benchmarks: paths, clips, progress output, statistics and memory readings."""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data"
RESULTS = REPO / "bench" / "results"
MODEL_CACHE = REPO / ".cache" / "models"
MIB = 1024 * 1024
GIB = 1024 * MIB

_STARTED = time.monotonic()


def spoken_fixtures() -> dict[str, dict[str, Any]]:
    """The spoken test fixtures by file name, as tests/data/fixtures.json lists them (text, language, duration)."""
    manifest = json.loads((REPO / "tests" / "data" / "fixtures.json").read_text())
    return {str(entry["file"]): entry for entry in manifest["speech"]}


def wav_of_pcm(pcm: bytes) -> bytes:
    """16 kHz mono 16-bit little-endian samples as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)
    return out.getvalue()


@dataclass(frozen=True)
class Clip:
    """A checked-in benchmark clip and the exact text spoken in it."""

    name: str
    path: Path
    text: str
    duration: float


def load_clips() -> dict[str, Clip]:
    """Every clip listed in bench/data/references.json, by short name ("60s", "5min")."""
    manifest = json.loads((DATA / "references.json").read_text())
    clips = {}
    for entry in manifest["clips"]:
        name = str(entry["file"]).removeprefix("speech_").removesuffix(".ogg")
        clips[name] = Clip(name, DATA / entry["file"], str(entry["text"]), float(entry["duration_s"]))
    return clips


def say(message: str) -> None:
    """Progress on stderr, with the minutes and seconds since the run started."""
    elapsed = time.monotonic() - _STARTED
    print(f"[bench {int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction in [0, 1]), as numpy's default; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def proc_status_kib(pid: int | str, field: str) -> int:
    """A memory field of /proc/PID/status (VmRSS, VmHWM, ...) in KiB; pid may be "self"."""
    prefix = f"{field}:"
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(prefix):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


class RssSampler:
    """Samples a process's VmRSS in a background thread; max and recent readings in bytes."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = proc_status_kib(self._pid, "VmRSS") * 1024
            except (OSError, KeyError):
                return
            with self._lock:
                self._samples.append((time.monotonic(), rss))
            self._stop.wait(self._interval)

    def between(self, start: float, end: float) -> list[int]:
        """The readings taken between two time.monotonic() values."""
        with self._lock:
            return [rss for at, rss in self._samples if start <= at <= end]

    @property
    def count(self) -> int:
        """How many readings were taken."""
        with self._lock:
            return len(self._samples)


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a cancelled run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)

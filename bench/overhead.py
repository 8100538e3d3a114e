"""Service overhead: one clip through gRPC unary and streaming vs a direct engine call, interleaved."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import MODEL_CACHE, Clip, median, say
from bench.server import ServerProcess, streaming, unary
from bench.wer import word_error_rate

MODES = ("direct", "unary", "stream")


SETTLE_SECONDS = 1.0


def direct_worker(clip_path: str, requests: multiprocessing.connection.Connection) -> None:
    """In a process of its own: load the server's engine with the server's settings, then time direct calls."""
    from service.audio.decode import decode_to_whisper_input
    from service.domain import Task
    from service.engines.base import EngineRequest
    from service.engines.catalog import local_model_specs
    from service.settings import Settings
    from service.wiring import build_local_engine

    settings = Settings(model_cache_dir=MODEL_CACHE)
    engine = build_local_engine(settings)
    spec = local_model_specs(settings.local_model, settings.model_cache_dir)[settings.local_model]
    model = engine.load(spec)
    requests.send("loaded")
    while requests.recv():
        started = time.perf_counter()
        audio = decode_to_whisper_input(Path(clip_path))
        request = EngineRequest(
            language="en" if not spec.multilingual else None,
            task=Task.TRANSCRIBE,
            prompt="",
            temperature=None,
            word_timestamps=False,
            cancelled=threading.Event(),
        )
        result = engine.transcribe(model, audio, request)
        text = " ".join(s.text.strip() for s in result.segments if s.text.strip())
        requests.send((time.perf_counter() - started, text))


def run(clip: Clip, rounds: int) -> dict[str, Any]:
    """Warm every path once, then `rounds` rounds of direct, unary and stream in rotating order; medians, ratios.

    The direct calls run in a process of their own, like the server, and every timed call starts after a pause:
    idle engine threads spin for a while after their work, and that must not be charged to whichever path runs
    next in the other process.
    """
    from service.audio.decode import decode_to_whisper_input
    from service.audio.probe import probe
    from service.settings import Settings

    settings = Settings(model_cache_dir=MODEL_CACHE)
    content = clip.path.read_bytes()
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    worker = spawn.Process(target=direct_worker, args=(str(clip.path), theirs), daemon=True)
    worker.start()
    say(f"overhead: loading {settings.local_model} on {settings.local_engine} in a direct-call process")

    def receive() -> Any:
        while not ours.poll(1.0):
            if not worker.is_alive():
                raise RuntimeError(f"the direct-call process exited with {worker.exitcode}")
        return ours.recv()

    assert receive() == "loaded"

    def direct() -> tuple[float, str]:
        ours.send(True)
        seconds, text = receive()
        return float(seconds), str(text)

    def timed(call: Callable[[], str]) -> tuple[float, str]:
        started = time.perf_counter()
        text = call()
        return time.perf_counter() - started, text

    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    texts: dict[str, str] = {}
    try:
        with ServerProcess() as server:
            stub = server.stub
            calls: dict[str, Callable[[], tuple[float, str]]] = {
                "direct": direct,
                "unary": lambda: timed(lambda: unary(stub, content).text),
                "stream": lambda: timed(lambda: streaming(stub, content).text),
            }
            for mode in MODES:
                say(f"overhead: warm-up {mode} on the {clip.name} clip")
                texts[mode] = calls[mode]()[1]
            for index in range(rounds):
                order = MODES[index % len(MODES) :] + MODES[: index % len(MODES)]
                for mode in order:
                    time.sleep(SETTLE_SECONDS)
                    times[mode].append(calls[mode]()[0])
                say(
                    f"overhead: round {index + 1}/{rounds} ({', '.join(order)}): "
                    + ", ".join(f"{mode} {times[mode][-1]:.2f} s" for mode in MODES)
                )
    finally:
        if worker.is_alive():
            ours.send(False)
        worker.join(30)

    # The decoding each path does, timed alone: the service validates the upload with one full decode that also
    # writes the model's input (probe); the direct call decodes the file for the model.
    probe_times, decode_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(3):
            started = time.perf_counter()
            probe(clip.path, settings.max_audio_seconds, Path(tmp) / f"{attempt}.s16")
            probe_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            decode_to_whisper_input(clip.path)
            decode_times.append(time.perf_counter() - started)

    medians = {mode: median(times[mode]) for mode in MODES}
    return {
        "clip": clip.name,
        "audio_seconds": clip.duration,
        "rounds": rounds,
        "settings": {
            "local_engine": settings.local_engine,
            "local_model": settings.local_model,
            "local_workers": settings.local_workers,
            "local_cpu_threads": settings.local_cpu_threads,
            "local_beam_size": settings.local_beam_size,
            "local_batch_size": settings.local_batch_size,
            "local_batched_min_seconds": settings.local_batched_min_seconds,
            "local_compute_type": settings.local_compute_type,
            "local_vad_filter": settings.local_vad_filter,
        },
        "seconds": times,
        "median_seconds": medians,
        "real_time_factor": {mode: clip.duration / medians[mode] for mode in MODES},
        "overhead": {mode: medians[mode] / medians["direct"] - 1 for mode in ("unary", "stream")},
        "paired_overhead_median": {
            mode: median([t / d - 1 for t, d in zip(times[mode], times["direct"], strict=True)])
            for mode in ("unary", "stream")
        },
        "wer": {mode: word_error_rate(clip.text, texts[mode]) for mode in MODES},
        "server_startup_seconds": server.startup_seconds,
        "probe_seconds_median": median(probe_times),
        "decode_seconds_median": median(decode_times),
    }

"""Concurrency: N clients in closed loops against one server with default settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Clip, median, percentile, say
from bench.server import ServerProcess, unary
from bench.wer import word_error_rate
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

Call = Callable[[pb_grpc.TranscribeServiceStub, bytes], pb.Transcript]


def level(server: ServerProcess, content: bytes, clients: int, requests: int, call: Call = unary) -> dict[str, Any]:
    """`requests` calls shared by `clients` threads that start together; latencies and wall time."""
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    barrier = threading.Barrier(clients)
    stub = server.stub
    texts: list[str] = []

    def client(count: int) -> list[float]:
        latencies = []
        barrier.wait()
        for _ in range(count):
            started = time.perf_counter()
            texts.append(call(stub, content).text)
            latencies.append(time.perf_counter() - started)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(client, per_client))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": requests,
        "wall_seconds": wall,
        "latencies": [latency for result in results for latency in result],
        "texts": texts,
    }


def run(clip: Clip, levels: list[int], requests_per_level: int) -> dict[str, Any]:
    """For each level, max(requests_per_level, clients) requests; throughput and p50/p95 latency."""
    content = clip.path.read_bytes()
    rows = []
    with ServerProcess() as server:
        say(f"concurrency: warm-up request on the {clip.name} clip")
        unary(server.stub, content)
        for clients in levels:
            requests = max(requests_per_level, clients)
            say(f"concurrency: {clients} client(s), {requests} requests of the {clip.name} clip")
            measured = level(server, content, clients, requests)
            latencies = measured["latencies"]
            row = {
                "clients": clients,
                "requests": requests,
                "wall_seconds": measured["wall_seconds"],
                "throughput": requests * clip.duration / measured["wall_seconds"],
                "latency_p50": percentile(latencies, 0.5),
                "latency_p95": percentile(latencies, 0.95),
                "latency_max": max(latencies),
                "latencies": latencies,
                "wer_median": median([word_error_rate(clip.text, text) for text in measured["texts"]]),
            }
            say(
                f"concurrency: {clients} client(s): {row['throughput']:.1f}x real time, "
                f"p50 {row['latency_p50']:.2f} s, p95 {row['latency_p95']:.2f} s"
            )
            rows.append(row)
    return {
        "clip": clip.name,
        "audio_seconds": clip.duration,
        "settings": "server defaults (faster-whisper int8, local_workers=2, cpu_threads=cores/workers)",
        "levels": rows,
    }

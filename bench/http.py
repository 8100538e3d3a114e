"""The HTTP face beside gRPC: one file through both, side by side, and memory while 1 GiB streams in over HTTP."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench.common import GIB, MIB, RESULTS, Clip, RssSampler, load_clips, median, say, write_json
from bench.server import STREAM_CHUNK_BYTES, ServerProcess, unary
from tests.helpers import wav_header

_HTTP_LISTENING = re.compile(r"HTTP face .* on http://\S+:(\d+)")
BOUNDARY = "bench-boundary-4c1d"
IDLE_SECONDS = 1.5
SETTLE_SECONDS = 2.0


def http_url(server: ServerProcess) -> str:
    """The base URL of the server's HTTP face, from its start-up log line."""
    for _ in range(100):
        if match := _HTTP_LISTENING.search(server.log_tail()):
            return f"http://127.0.0.1:{match[1]}"
        time.sleep(0.05)
    raise RuntimeError(f"the server logged no HTTP face:\n{server.log_tail()}")


def http_transcribe(client: httpx.Client, clip: Clip) -> str:
    """POST the clip to /v1/audio/transcriptions as the openai SDK does (fields, then the file, streamed)."""
    with clip.path.open("rb") as audio:
        response = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1", "response_format": "json"},
            files={"file": (clip.path.name, audio)},
        )
    response.raise_for_status()
    text: str = response.json()["text"]
    return text


def side_by_side(clip: Clip, rounds: int) -> dict[str, Any]:
    """The clip through gRPC (unary) and HTTP, alternating, on one server; HTTP's overhead over gRPC."""
    content = clip.path.read_bytes()
    grpc_seconds: list[float] = []
    http_seconds: list[float] = []
    with ServerProcess() as server, httpx.Client(base_url=http_url(server), timeout=3600) as client:
        say(f"http: warm-up on the {clip.name} clip, both faces")
        unary(server.stub, content)
        http_transcribe(client, clip)
        for round_number in range(rounds):
            for face, seconds in (("grpc", grpc_seconds), ("http", http_seconds))[:: 1 if round_number % 2 else -1]:
                started = time.perf_counter()
                if face == "grpc":
                    unary(server.stub, content)
                else:
                    http_transcribe(client, clip)
                seconds.append(time.perf_counter() - started)
            say(f"http: round {round_number + 1}: gRPC {grpc_seconds[-1]:.2f} s, HTTP {http_seconds[-1]:.2f} s")
    grpc_median, http_median = median(grpc_seconds), median(http_seconds)
    return {
        "clip": clip.name,
        "rounds": rounds,
        "grpc_seconds": grpc_seconds,
        "http_seconds": http_seconds,
        "grpc_median_seconds": grpc_median,
        "http_median_seconds": http_median,
        "http_overhead_percent": (http_median / grpc_median - 1) * 100,
    }


def form_chunks(total: int, chunk: int, sent: list[int]) -> Iterator[bytes]:
    """A multipart form whose file is a WAV of `total` bytes (header and silence) plus one byte over the limit."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
    ).encode()
    header = wav_header(channels=1, rate=16_000, data_bytes=total - 44)
    zeros = bytes(chunk)
    yield header
    sent[0] = len(header)
    next_report = 256 * MIB
    while sent[0] < total:
        size = min(chunk, total - sent[0])
        yield zeros if size == chunk else zeros[:size]
        sent[0] += size
        if sent[0] >= next_report:
            say(f"http upload: {sent[0] // MIB} MiB sent")
            next_report += 256 * MIB
    # The server's limit is exactly `total`: this byte makes it refuse the upload (413) before any decoding.
    yield b"\0"
    sent[0] += 1
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def upload_memory(warm_clip: Clip, total: int = GIB) -> dict[str, Any]:
    """Stream a `total`-byte multipart upload to a server whose limit is `total`; its RSS growth over idle."""
    settings = {"local_max_audio_bytes": str(total), "max_audio_bytes": str(total)}
    with ServerProcess(settings) as server, httpx.Client(base_url=http_url(server), timeout=3600) as client:
        say(f"http upload: warm-up request on the {warm_clip.name} clip")
        http_transcribe(client, warm_clip)
        with RssSampler(server.pid) as sampler:
            idle_start = time.monotonic()
            time.sleep(IDLE_SECONDS)
            upload_start = time.monotonic()
            sent = [0]
            say(f"http upload: streaming {total / GIB:g} GiB in {STREAM_CHUNK_BYTES // 1024} KiB chunks")
            response = client.post(
                "/v1/audio/transcriptions",
                content=form_chunks(total, STREAM_CHUNK_BYTES, sent),
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            upload_end = time.monotonic()
            time.sleep(SETTLE_SECONDS)
            settle_end = time.monotonic()
    idle = median([float(v) for v in sampler.between(idle_start, upload_start)])
    peak = max(sampler.between(upload_start, upload_end))
    after = sampler.between(upload_end + SETTLE_SECONDS / 2, settle_end)
    seconds = upload_end - upload_start
    say(f"http upload: {response.status_code} after {seconds:.1f} s; peak RSS growth {(peak - idle) / MIB:.1f} MiB")
    return {
        "bytes_streamed": sent[0],
        "limit_bytes": total,
        "status": response.status_code,
        "code": response.json().get("error", {}).get("code"),
        "upload_seconds": seconds,
        "throughput_mib_per_s": sent[0] / MIB / seconds,
        "idle_rss_bytes": idle,
        "peak_rss_bytes": peak,
        "rss_growth_bytes": peak - idle,
        "rss_after_bytes": median([float(v) for v in after]) if after else None,
    }


def run(clip: Clip, warm_clip: Clip, rounds: int = 8, upload_total: int = GIB) -> dict[str, Any]:
    """Both measurements: the side-by-side calls and the upload's memory."""
    return {"side_by_side": side_by_side(clip, rounds), "upload": upload_memory(warm_clip, upload_total)}


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.http [--quick]`: run both and write bench/results[/quick]/http.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 s clip, 2 rounds, a 256 MiB upload")
    args = parser.parse_args(argv)
    clips = load_clips()
    short = clips["60s"]
    clip = short if args.quick else clips["5min"]
    results = run(clip, short, rounds=2 if args.quick else 8, upload_total=256 * MIB if args.quick else GIB)
    write_json((RESULTS / "quick" if args.quick else RESULTS) / "http.json", results)


if __name__ == "__main__":
    main()

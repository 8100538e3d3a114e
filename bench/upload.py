"""Upload memory: the server's RSS while a client streams 1 GiB of WAV audio generated on the fly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc

from bench.common import GIB, MIB, Clip, RssSampler, median, proc_status_kib, say
from bench.server import STREAM_CHUNK_BYTES, ServerProcess, unary
from tests.helpers import wav_header
from transcribe.v1 import transcribe_service_pb2 as pb

IDLE_SECONDS = 1.5
SETTLE_SECONDS = 2.0


def upload_requests(total: int, chunk: int, sent: list[int]) -> Iterator[pb.TranscribeStreamRequest]:
    """Config, then a WAV of `total` bytes (header and silence) in chunks, then one byte over the limit."""
    yield pb.TranscribeStreamRequest(config=pb.TranscriptionConfig())
    header = wav_header(channels=1, rate=16_000, data_bytes=total - 44)
    zeros = bytes(chunk)
    first = header + zeros[: chunk - len(header)]
    yield pb.TranscribeStreamRequest(audio_content=first)
    sent[0] = len(first)
    next_report = 256 * MIB
    while sent[0] < total:
        size = min(chunk, total - sent[0])
        yield pb.TranscribeStreamRequest(audio_content=zeros if size == chunk else zeros[:size])
        sent[0] += size
        if sent[0] >= next_report:
            say(f"upload: {sent[0] // MIB} MiB sent")
            next_report += 256 * MIB
    # The server's limit is exactly `total`: this byte makes it reject the upload before any decoding.
    yield pb.TranscribeStreamRequest(audio_content=b"\0")
    sent[0] += 1


def run(warm_clip: Clip, total: int = GIB) -> dict[str, Any]:
    """Stream `total` bytes to a server whose local upload limit is `total`; RSS growth over idle."""
    settings = {"local_max_audio_bytes": str(total), "max_audio_bytes": str(total)}
    with ServerProcess(settings) as server:
        say(f"upload: warm-up request on the {warm_clip.name} clip")
        unary(server.stub, warm_clip.path.read_bytes())
        hwm_before = proc_status_kib(server.pid, "VmHWM") * 1024
        with RssSampler(server.pid) as sampler:
            idle_start = time.monotonic()
            time.sleep(IDLE_SECONDS)
            upload_start = time.monotonic()
            sent = [0]
            say(f"upload: streaming {total / GIB:g} GiB in {STREAM_CHUNK_BYTES // 1024} KiB chunks")
            code, message = "OK", ""
            try:
                server.stub.TranscribeStream(upload_requests(total, STREAM_CHUNK_BYTES, sent), timeout=3600)
            except grpc.RpcError as error:
                code, message = error.code().name, str(error.details())
            upload_end = time.monotonic()
            time.sleep(SETTLE_SECONDS)
            settle_end = time.monotonic()
        hwm_after = proc_status_kib(server.pid, "VmHWM") * 1024
    idle = median([float(v) for v in sampler.between(idle_start, upload_start)])
    during = sampler.between(upload_start, upload_end)
    after = sampler.between(upload_end + SETTLE_SECONDS / 2, settle_end)
    peak = max(during)
    seconds = upload_end - upload_start
    say(f"upload: {code} after {seconds:.1f} s; peak RSS growth {(peak - idle) / MIB:.1f} MiB")
    return {
        "bytes_streamed": sent[0],
        "limit_bytes": total,
        "chunk_bytes": STREAM_CHUNK_BYTES,
        "status": code,
        "status_message": message,
        "upload_seconds": seconds,
        "throughput_mib_per_s": sent[0] / MIB / seconds,
        "idle_rss_bytes": idle,
        "peak_rss_bytes": peak,
        "rss_growth_bytes": peak - idle,
        "rss_after_bytes": median([float(v) for v in after]) if after else None,
        "vmhwm_before_bytes": hwm_before,
        "vmhwm_after_bytes": hwm_after,
        "samples": len(during),
    }

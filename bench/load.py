"""Load harness: many concurrent clients against a real server process, for a bounded time.

Starts `python -m service` as a subprocess whose API backend talks to a loopback OpenAI-compatible server that
answers every request after 300 ms, then runs 64 clients uploading files of mixed sizes to the API backend and
8 clients to the local backend (tiny.en), while a separate process checks health every 50 ms. Reports throughput,
latency percentiles, health-check latency, counts by status and reason, leftover files and the server's memory, and
judges the targets:

- no status other than OK and the designed RESOURCE_EXHAUSTED;
- health-check p99 under 50 ms during the load;
- zero upload files left, during the drain and after shutdown;
- server RSS back within 10% of its idle level afterwards (idle: at rest after the first calls and a short warm-up
  burst of the same load, so what the first burst of concurrency allocates once is not counted as growth).

Run with `make load` or `python -m bench.load [--seconds 60] [--quick]`; results go to bench/results/load.json and
bench/results/LOAD.md. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from bench.common import MODEL_CACHE, REPO, RESULTS, percentile, proc_status_kib, wav_of_pcm
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

DATA = REPO / "tests" / "data"
API_LATENCY_SECONDS = 0.3
HEALTH_INTERVAL_SECONDS = 0.05
HEALTH_P99_TARGET_MS = 50.0
IDLE_HEALTH_SECONDS = 3.0
WARM_BURST_SECONDS = 5.0
RSS_TOLERANCE = 0.10
ALLOWED_CODES = frozenset({"OK", "RESOURCE_EXHAUSTED"})
CHUNK = 64 * 1024
CALL_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Payload:
    """One file a client uploads, and how."""

    name: str
    data: bytes
    streamed: bool


@dataclass(frozen=True)
class Call:
    """The outcome of one call."""

    backend: str
    payload: str
    size: int
    started: float
    seconds: float
    code: str
    reason: str


@dataclass
class Options:
    """What to run."""

    seconds: float = 60.0
    api_clients: int = 64
    local_clients: int = 8
    seed: int = 1
    output: Path = RESULTS


@dataclass
class ServerProcess:
    """The server subprocess and where it keeps its files."""

    process: subprocess.Popen[bytes]
    target: str
    temp_dir: Path
    log_path: Path
    upload_peak: int = field(default=0)


# -- payloads -------------------------------------------------------------------------------------------------------


def wav_of(path: Path) -> bytes:
    """A 16 kHz mono 16-bit WAV of any audio file (to build a large upload from a small fixture)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    pieces = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return wav_of_pcm(np.concatenate(pieces).astype("<i2").tobytes())


def payload(kind: str, data: bytes, *, streamed: bool) -> Payload:
    """A payload named by format, size and call shape, e.g. "wav-327KB-stream"."""
    size = f"{len(data) / 1e6:.0f}MB" if len(data) >= 1_000_000 else f"{len(data) / 1e3:.0f}KB"
    return Payload(f"{kind}-{size}-{'stream' if streamed else 'unary'}", data, streamed)


def api_payloads() -> list[Payload]:
    """Mixed sizes, tens of KB to 2 MB, unary and streamed."""

    def read(name: str) -> bytes:
        return (DATA / name).read_bytes()

    return [
        payload("ogg", read("speech_en.ogg"), streamed=True),
        payload("mp3", read("speech_en.mp3"), streamed=False),
        payload("flac", read("speech_en.flac"), streamed=False),
        payload("wav", read("speech_en.wav"), streamed=True),
        payload("wav", wav_of(DATA / "speech_en_60s.ogg"), streamed=True),
    ]


def local_payloads() -> list[Payload]:
    """Short clips: the local backend transcribes each one for real."""
    return [
        payload("mp3", (DATA / "speech_en.mp3").read_bytes(), streamed=False),
        payload("wav", (DATA / "speech_en.wav").read_bytes(), streamed=True),
    ]


# -- the server process ---------------------------------------------------------------------------------------------


def upload_files(temp_dir: Path) -> list[Path]:
    """Files in the server's upload folders, other than the lock files of running servers."""
    return [p for p in temp_dir.rglob("*") if p.is_file() and p.name != ".lock"]


def start_server(fake: FakeOpenAIServer, work: Path) -> ServerProcess:
    """Start `python -m service` on an ephemeral port and wait for its `listening on` line."""
    temp_dir = work / "uploads"
    temp_dir.mkdir()
    log_path = work / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSCRIBE_", "OPENAI_"))}
    env.update(
        TRANSCRIBE_HOST="127.0.0.1",
        TRANSCRIBE_PORT="0",
        TRANSCRIBE_HTTP_HOST="127.0.0.1",
        TRANSCRIBE_HTTP_PORT="0",
        TRANSCRIBE_TEMP_DIR=str(temp_dir),
        TRANSCRIBE_DATA_DIR=str(temp_dir / "data"),
        TRANSCRIBE_MODEL_CACHE_DIR=str(MODEL_CACHE),
        TRANSCRIBE_GRACE_PERIOD_SECONDS="20",
        OPENAI_API_KEY=fake.api_key or "",
        OPENAI_BASE_URL=fake.base_url,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=REPO, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if found:
            return ServerProcess(process, f"127.0.0.1:{found.group(1)}", temp_dir, log_path)
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start listening within 120 s")


async def wait_serving(target: str, within: float = 180.0) -> None:
    """Wait until the server's overall health is SERVING (the local model is loaded)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the server was not SERVING within {within:g} s")


CALL_LOG = re.compile(r"service\.calls .*/transcribe\.v1\.TranscribeService/(\w+) ([A-Z_]+) [\d.]+ms")


def server_codes(log_text: str) -> dict[str, int]:
    """Status codes the server sent for TranscribeService calls, from its per-call log lines."""
    return dict(Counter(match.group(2) for match in CALL_LOG.finditer(log_text)).most_common())


def error_excerpt(log_text: str, limit: int = 200) -> list[str]:
    """The server's ERROR records with their tracebacks (text log format), at most `limit` lines."""
    excerpt: list[str] = []
    inside = False
    for line in log_text.splitlines():
        if re.match(r"\d{4}-\d\d-\d\d ", line):
            inside = " ERROR " in line or " CRITICAL " in line
        if inside:
            excerpt.append(line)
    return excerpt[:limit]


def stop_server(server: ServerProcess) -> int:
    """SIGTERM, then wait for the drain; returns the exit code."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return -9


# -- health prober (a separate process, so the load generator's own work does not add to its latency) ----------------


def probe_health(
    target: str, stop: multiprocessing.synchronize.Event, out: multiprocessing.connection.Connection
) -> None:
    """Check health every 50 ms until told to stop; send back latencies (seconds) and failures."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # connect before measuring
        while not stop.is_set():
            started = time.perf_counter()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                latencies.append(time.perf_counter() - started)
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                failures[code.name if code is not None else "UNKNOWN"] += 1
            stop.wait(HEALTH_INTERVAL_SECONDS)
    out.send((latencies, dict(failures)))
    out.close()


async def health_while(target: str, work: Awaitable[object]) -> tuple[list[float], dict[str, int]]:
    """Health-check latencies (seconds) and failures, measured from a separate process while `work` runs."""
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    receive, send = spawn.Pipe(duplex=False)
    prober = spawn.Process(target=probe_health, args=(target, stop, send), daemon=True)
    prober.start()
    try:
        await work
    finally:
        stop.set()
    latencies, failures = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(prober.join, 10)
    return latencies, failures


# -- clients --------------------------------------------------------------------------------------------------------


def status_of(error: grpc.aio.AioRpcError) -> tuple[str, str, float | None]:
    """Code, ErrorInfo reason (or the status message when there is none) and RetryInfo delay of a failed call."""
    reason, retry = "", None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry = delay.retry_delay.ToNanoseconds() / 1e9
    return error.code().name, reason or f"no ErrorInfo: {error.details()}", retry


async def stream_requests(config: pb.TranscriptionConfig, data: bytes) -> AsyncIterator[pb.TranscribeStreamRequest]:
    """Config, then the file in 64 KiB chunks."""
    yield pb.TranscribeStreamRequest(config=config)
    for start in range(0, len(data), CHUNK):
        yield pb.TranscribeStreamRequest(audio_content=data[start : start + CHUNK])


async def one_call(
    stub: pb_grpc.TranscribeServiceAsyncStub, backend: int, payload: Payload
) -> tuple[str, str, float | None]:
    """Upload one payload; the code, reason and retry delay."""
    config = pb.TranscriptionConfig(backend=backend)  # type: ignore[arg-type]
    try:
        if payload.streamed:
            await stub.TranscribeStream(stream_requests(config, payload.data), timeout=CALL_TIMEOUT_SECONDS)
        else:
            await stub.Transcribe(
                pb.TranscribeRequest(config=config, content=payload.data), timeout=CALL_TIMEOUT_SECONDS
            )
    except grpc.aio.AioRpcError as error:
        return status_of(error)
    return "OK", "", None


async def client(
    target: str, backend: int, payloads: list[Payload], *, end: float, calls: list[Call], rng: random.Random
) -> None:
    """One client on its own connection: call, record, repeat until `end`; honour RetryInfo when refused."""
    name = "openai" if backend == pb.BACKEND_OPENAI else "local"
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.TranscribeServiceStub(channel)
        await asyncio.sleep(rng.random())  # stagger the start
        while time.monotonic() < end:
            payload = rng.choice(payloads)
            started = time.perf_counter()
            code, reason, retry = await one_call(stub, backend, payload)
            calls.append(
                Call(name, payload.name, len(payload.data), started, time.perf_counter() - started, code, reason)
            )
            if code == "RESOURCE_EXHAUSTED":
                await asyncio.sleep(min(retry if retry is not None else 1.0, max(0.0, end - time.monotonic())))


async def watch_uploads(server: ServerProcess, stop: asyncio.Event) -> None:
    """Track the most upload files on disk at once."""
    while not stop.is_set():
        server.upload_peak = max(server.upload_peak, len(await asyncio.to_thread(upload_files, server.temp_dir)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def vm_rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    return proc_status_kib(pid, "VmRSS")


# -- the run --------------------------------------------------------------------------------------------------------


def latency_ms(seconds: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of latencies in seconds, as milliseconds rounded to 0.1; None without values."""
    return {f"p{q}": round(percentile(seconds, q / 100) * 1000, 1) if seconds else None for q in (50, 95, 99)}


def summarize(calls: list[Call], elapsed: float) -> dict[str, Any]:
    """Throughput, latency percentiles and status counts, overall and per backend."""

    def stats(subset: list[Call]) -> dict[str, Any]:
        ok = [c.seconds for c in subset if c.code == "OK"]
        return {
            "calls": len(subset),
            "ok": len(ok),
            "throughput_ok_per_s": round(len(ok) / elapsed, 2) if elapsed else None,
            "latency_ok_ms": latency_ms(ok),
            "codes": dict(Counter(c.code for c in subset).most_common()),
            "reasons": dict(Counter(f"{c.code}/{c.reason}" for c in subset if c.code != "OK").most_common()),
        }

    return {
        "all": stats(calls),
        "openai": stats([c for c in calls if c.backend == "openai"]),
        "local": stats([c for c in calls if c.backend == "local"]),
        "by_payload": {
            f"{c.backend}:{c.payload}": stats([d for d in calls if (d.backend, d.payload) == (c.backend, c.payload)])
            for c in calls
        },
    }


async def settle_rss(pid: int, idle: int, within: float = 20.0) -> int:
    """Poll RSS for up to `within` seconds until it is back within the tolerance; returns the last reading."""
    deadline = time.monotonic() + within
    reading = vm_rss_kib(pid)
    while reading > idle * (1 + RSS_TOLERANCE) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        reading = vm_rss_kib(pid)
    return reading


async def run(options: Options) -> dict[str, Any]:
    """Start everything, run the load, drain, stop, and return the report."""
    rng = random.Random(options.seed)
    api, local = api_payloads(), local_payloads()
    load_before = os.getloadavg()
    with FakeOpenAIServer() as fake, tempfile.TemporaryDirectory(prefix="transcribe-load-") as tmp:
        fake.set_default_fault(Fault.slow(API_LATENCY_SECONDS))
        server = start_server(fake, Path(tmp))
        exit_code: int | None = None
        try:
            await wait_serving(server.target)

            def clients(seconds: float, calls: list[Call]) -> Awaitable[list[None]]:
                end = time.monotonic() + seconds
                return asyncio.gather(
                    *[
                        client(server.target, backend, payloads, end=end, calls=calls, rng=random.Random(rng.random()))
                        for backend, payloads, count in (
                            (pb.BACKEND_OPENAI, api, options.api_clients),
                            (pb.BACKEND_LOCAL, local, options.local_clients),
                        )
                        for _ in range(count)
                    ]
                )

            # Warm both paths once (the cold memory level), then give the server one short burst of the same load so
            # that pools sized by concurrency (every local worker's buffers, allocator arenas, connections) exist
            # before the idle level the target compares against is taken.
            for backend, payloads in ((pb.BACKEND_OPENAI, api), (pb.BACKEND_LOCAL, local)):
                async with grpc.aio.insecure_channel(server.target) as channel:
                    stub = pb_grpc.TranscribeServiceStub(channel)
                    for payload in payloads:
                        code, reason, _ = await one_call(stub, backend, payload)
                        if code != "OK":
                            raise RuntimeError(f"warm-up call {payload.name} failed: {code} {reason}")
            rss_cold = vm_rss_kib(server.process.pid)
            await clients(WARM_BURST_SECONDS, [])
            rss_idle = await settle_rss(server.process.pid, rss_cold)

            idle_health = await health_while(server.target, asyncio.sleep(IDLE_HEALTH_SECONDS))

            log_offset = server.log_path.stat().st_size
            calls: list[Call] = []
            stop_watch = asyncio.Event()
            watcher = asyncio.create_task(watch_uploads(server, stop_watch))
            started = time.monotonic()
            latencies, health_failures = await health_while(server.target, clients(options.seconds, calls))
            elapsed = time.monotonic() - started
            stop_watch.set()
            await watcher

            files_after_drain = [str(p) for p in upload_files(server.temp_dir)]
            rss_after_load = vm_rss_kib(server.process.pid)
            rss_after = await settle_rss(server.process.pid, rss_idle)
        finally:
            exit_code = stop_server(server)
        files_after_stop = [str(p) for p in server.temp_dir.rglob("*") if p.is_file()]
        with server.log_path.open("rb") as log:
            log.seek(log_offset)
            log_text = log.read().decode(errors="replace")

    summary = summarize(calls, elapsed)
    health_ms = [v * 1000 for v in latencies]
    health_p99 = percentile(health_ms, 0.99) if health_ms else None
    sent = server_codes(log_text)
    unexpected = [c for c in calls if c.code not in ALLOWED_CODES]
    targets = {
        "only OK and RESOURCE_EXHAUSTED": {
            "passed": set(sent) <= ALLOWED_CODES and not unexpected,
            "observed": {"server_sent": sent, "clients_saw": summary["all"]["codes"]},
        },
        f"health p99 < {HEALTH_P99_TARGET_MS:g} ms": {
            "passed": health_p99 is not None and health_p99 < HEALTH_P99_TARGET_MS and not health_failures,
            "observed": {"p99_ms": None if health_p99 is None else round(health_p99, 1), "failures": health_failures},
        },
        "zero files left": {
            "passed": not files_after_drain and not files_after_stop,
            "observed": {"after_drain": files_after_drain, "after_stop": files_after_stop},
        },
        f"RSS back within {RSS_TOLERANCE:.0%} of idle": {
            "passed": rss_after <= rss_idle * (1 + RSS_TOLERANCE),
            "observed": {
                "cold_mib": round(rss_cold / 1024, 1),
                "idle_mib": round(rss_idle / 1024, 1),
                "right_after_load_mib": round(rss_after_load / 1024, 1),
                "settled_mib": round(rss_after / 1024, 1),
                "ratio": round(rss_after / rss_idle, 3),
            },
        },
    }
    return {
        "config": {
            "seconds": options.seconds,
            "api_clients": options.api_clients,
            "local_clients": options.local_clients,
            "api_latency_s": API_LATENCY_SECONDS,
            "api_payloads": {p.name: len(p.data) for p in api},
            "local_payloads": {p.name: len(p.data) for p in local},
            "server": "python -m service, default settings (2 local workers, 8 API workers, 64 uploads at once)",
        },
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "elapsed_s": round(elapsed, 2),
        "results": summary,
        "health_idle": {
            "checks": len(idle_health[0]),
            "failures": idle_health[1],
            "latency_ms": latency_ms(idle_health[0]),
        },
        "health": {
            "checks": len(health_ms),
            "failures": health_failures,
            "latency_ms": latency_ms(latencies),
            "max_ms": round(max(health_ms), 1) if health_ms else None,
        },
        "uploads_on_disk_peak": server.upload_peak,
        "server_exit_code": exit_code,
        "unexpected_calls": [
            {"backend": c.backend, "payload": c.payload, "code": c.code, "reason": c.reason} for c in unexpected[:20]
        ],
        "server_errors": error_excerpt(log_text),
        "targets": targets,
        "passed": all(t["passed"] for t in targets.values()),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a short Markdown page."""
    config, results, health = report["config"], report["results"], report["health"]
    lines = [
        "# Load test",
        "",
        f"{config['api_clients']} clients against the API backend (loopback server answering after "
        f"{config['api_latency_s'] * 1000:g} ms) and {config['local_clients']} against the local backend (tiny.en), "
        f"for {config['seconds']:g} s ({report['elapsed_s']} s until the last call ended), "
        f"on {report['environment']['cpus']} CPUs (load average before: {report['environment']['loadavg_before']}).",
        "",
        "## Targets",
        "",
        "| Target | Result | Observed |",
        "| --- | --- | --- |",
    ]
    for name, target in report["targets"].items():
        lines.append(f"| {name} | {'PASS' if target['passed'] else 'FAIL'} | `{json.dumps(target['observed'])}` |")
    lines += [
        "",
        "## Calls",
        "",
        "| Backend | Calls | OK | OK/s | p50 ms | p95 ms | p99 ms | Codes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("openai", "local", "all"):
        row = results[name]
        lat = row["latency_ok_ms"]
        codes = ", ".join(f"{code} {count}" for code, count in row["codes"].items())
        lines.append(
            f"| {name} | {row['calls']} | {row['ok']} | {row['throughput_ok_per_s']} | "
            f"{lat['p50']} | {lat['p95']} | {lat['p99']} | {codes} |"
        )
    reasons = results["all"]["reasons"]
    codes = report["targets"]["only OK and RESOURCE_EXHAUSTED"]["observed"]
    lines += [
        "",
        "Refusals by reason: " + (", ".join(f"{k} {v}" for k, v in reasons.items()) or "none") + ".",
        "Codes the server sent (its call log): "
        + ", ".join(f"{code} {count}" for code, count in codes["server_sent"].items())
        + ".",
        "",
        "| Payload | Calls | OK | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in sorted(results["by_payload"].items()):
        lat = row["latency_ok_ms"]
        lines.append(f"| {name} | {row['calls']} | {row['ok']} | {lat['p50']} | {lat['p99']} |")
    lat = health["latency_ms"]
    rss = report["targets"][f"RSS back within {RSS_TOLERANCE:.0%} of idle"]["observed"]
    lines += [
        "",
        f"Health checks during the load: {health['checks']} (every {HEALTH_INTERVAL_SECONDS * 1000:g} ms from a "
        f"separate process), p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {health['max_ms']} "
        f"ms, failures {health['failures'] or 'none'}; at idle just before: p50 "
        f"{report['health_idle']['latency_ms']['p50']} ms, p99 {report['health_idle']['latency_ms']['p99']} ms.",
        f"Server memory: {rss['cold_mib']} MiB after the first calls, {rss['idle_mib']} MiB at rest after a "
        f"{WARM_BURST_SECONDS:g} s warm-up burst of the same load (the idle level), {rss['right_after_load_mib']} MiB "
        f"when the load ended, {rss['settled_mib']} MiB once settled.",
        f"Most upload files on disk at once: {report['uploads_on_disk_peak']}. "
        f"Server exit code after SIGTERM: {report['server_exit_code']}.",
        "",
        f"Overall: **{'PASS' if report['passed'] else 'FAIL'}**.",
        "",
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> Options:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long clients keep calling (default 60)")
    parser.add_argument("--quick", action="store_true", help="a 10-second run")
    parser.add_argument("--api-clients", type=int, default=64)
    parser.add_argument("--local-clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for load.json and LOAD.md")
    args = parser.parse_args(argv)
    return Options(
        seconds=10.0 if args.quick else args.seconds,
        api_clients=args.api_clients,
        local_clients=args.local_clients,
        seed=args.seed,
        output=args.output,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the load test, write the results, and return 0 when every target is met."""
    options = parse(argv)
    print(
        f"load: {options.api_clients} API + {options.local_clients} local clients for {options.seconds:g} s",
        file=sys.stderr,
    )
    report = asyncio.run(run(options))
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    page = markdown(report)
    (options.output / "LOAD.md").write_text(page)
    print(page)
    print(f"wrote {options.output / 'load.json'} and {options.output / 'LOAD.md'}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

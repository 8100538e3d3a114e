"""Jobs: jobs per minute on short files (embedded, and on Celery workers on a real Redis), the time from submit to
running when idle, a burst of submissions against a bounded job queue, and the server's memory over a run of jobs."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.longrunning import operations_grpc_pb2 as lro_grpc
from google.longrunning import operations_proto_pb2 as lro
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.common import (
    REPO,
    RESULTS,
    Clip,
    RssSampler,
    load_clips,
    median,
    percentile,
    proc_status_kib,
    say,
    spoken_fixtures,
    write_json,
)
from bench.server import LOG_LINES, STARTUP_TIMEOUT_SECONDS, ServerProcess, server_env
from bench.wer import word_error_rate
from tests.processes import REDIS_STOP_SECONDS, ServiceProcess, start_redis
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

TEN_SECONDS_CLIP = REPO / "tests" / "data" / "speech_en.wav"
IDLE_PAUSE_SECONDS = 0.5
"""Pause before each idle submission, so the previous job's engine threads are idle again."""
POLL_SECONDS = 0.01
WAIT_SECONDS = 600.0
_WORKER_READY = re.compile(r" ready\.")
WORKER_STOP_SECONDS = 60.0
WORKER_SETTINGS = {"jobs_workers": "1", "local_workers": "1"}
"""Each Celery worker process: one job at a time, one local engine worker (cores / 1 = 2 CPU threads)."""


def test_clip() -> Clip:
    """tests/data/speech_en.wav (about 10 s, one spoken sentence pair) with its text from fixtures.json."""
    entry = spoken_fixtures()[TEN_SECONDS_CLIP.name]
    return Clip("10s", TEN_SECONDS_CLIP, str(entry["text"]), float(entry["duration_s"]))


# -- talking to the jobs API ----------------------------------------------------------------------------------------


def metadata_of(operation: lro.Operation) -> pb.TranscriptionJobMetadata:
    """The job metadata an Operation carries."""
    metadata = pb.TranscriptionJobMetadata()
    operation.metadata.Unpack(metadata)
    return metadata


def seconds(stamp: timestamp_pb2.Timestamp) -> float:
    """A google.protobuf.Timestamp as seconds since the epoch."""
    return float(stamp.ToNanoseconds()) / 1e9


def text_of(operation: lro.Operation) -> str | None:
    """The transcript of a succeeded job, None for any other outcome."""
    response = pb.SubmitTranscriptionResponse()
    if operation.WhichOneof("result") != "response" or not operation.response.Unpack(response):
        return None
    return str(response.transcript.text)


def refusal_of(error: grpc.RpcError) -> dict[str, Any]:
    """The code, ErrorInfo reason and RetryInfo delay of a refused call."""
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
    code = error.code()
    return {"code": code.name if code is not None else "UNKNOWN", "reason": reason, "retry_after_seconds": retry}


class Jobs:
    """The jobs RPCs on a server's channel: submit, get, wait, list."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = pb_grpc.TranscribeServiceStub(channel)
        self.operations = lro_grpc.OperationsStub(channel)  # type: ignore[no-untyped-call]

    def submit(self, content: bytes) -> lro.Operation:
        """A job for the audio sent whole, with the server's default config."""
        operation: lro.Operation = self.stub.SubmitTranscription(
            pb.SubmitTranscriptionRequest(config=pb.TranscriptionConfig(), content=content), timeout=60
        )
        return operation

    def get(self, name: str) -> lro.Operation:
        """The operation now."""
        operation: lro.Operation = self.operations.GetOperation(lro.GetOperationRequest(name=name), timeout=10)
        return operation

    def wait(self, name: str, seconds: float = WAIT_SECONDS) -> lro.Operation:
        """The operation once done, calling WaitOperation again until then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            request = lro.WaitOperationRequest(name=name, timeout=duration_pb2.Duration(seconds=10))
            operation: lro.Operation = self.operations.WaitOperation(request, timeout=30)
            if operation.done:
                return operation
        raise RuntimeError(f"{name} did not finish in {seconds:.0f} s")

    def wait_all(self, names: list[str]) -> list[lro.Operation]:
        """Every operation once done, in the order given."""
        return [self.wait(name) for name in names]

    def listed(self, filter_text: str = "") -> list[lro.Operation]:
        """Every operation ListOperations returns, page after page."""
        found: list[lro.Operation] = []
        token = ""
        while True:
            request = lro.ListOperationsRequest(name="operations", filter=filter_text, page_size=1000, page_token=token)
            page: lro.ListOperationsResponse = self.operations.ListOperations(request, timeout=30)
            found += page.operations
            token = page.next_page_token
            if not token:
                return found


# -- processes: Redis and Celery workers ----------------------------------------------------------------------------


class RedisServer:
    """A real redis-server on a free loopback port, nothing saved to disk, its folder removed at the end."""

    def __init__(self) -> None:
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._process: ServiceProcess | None = None
        self.url = ""
        self.version = ""

    @property
    def pid(self) -> int:
        """The redis-server's process id."""
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: `make redis` installs it")
        banner = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
        self.version = next((part[2:] for part in banner.split() if part.startswith("v=")), banner.strip())
        self._folder = tempfile.TemporaryDirectory(prefix="transcribe-bench-redis-")
        try:
            self._process, self.url = start_redis(binary, Path(self._folder.name), keep=LOG_LINES)
        except BaseException:
            self._folder.cleanup()
            raise
        say(f"jobs: redis-server pid {self.pid} at {self.url}")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None:
            self._process.stop(REDIS_STOP_SECONDS)
        if self._folder is not None:
            self._folder.cleanup()


class WorkerProcess:
    """`python -m service.worker` with the given settings; entering waits until Celery reports it ready."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self._env = server_env(**settings)
        self._process: ServiceProcess | None = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> WorkerProcess:
        started = time.perf_counter()
        self._process, _ = ServiceProcess.started(
            [sys.executable, "-m", "service.worker"],
            self._env,
            _WORKER_READY,
            seconds=STARTUP_TIMEOUT_SECONDS,
            stop_seconds=WORKER_STOP_SECONDS,
            keep=LOG_LINES,
        )
        say(f"jobs: Celery worker pid {self.pid} ready after {time.perf_counter() - started:.1f} s")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None:
            self._process.stop(WORKER_STOP_SECONDS)


@contextmanager
def folders() -> Iterator[Path]:
    """A private folder for the job data and every process's uploads, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="transcribe-bench-jobs-") as folder:
        root = Path(folder)
        (root / "data").mkdir()
        yield root


def process_settings(root: Path, name: str, **settings: str) -> dict[str, str]:
    """Settings for one server or worker: the shared job data folder and uploads in a folder of its own."""
    uploads = root / f"uploads-{name}"
    uploads.mkdir(exist_ok=True)
    return {"data_dir": str(root / "data"), "temp_dir": str(uploads), "http_port": "-1", **settings}


# -- CPU accounting -------------------------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / ticks


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU used between entering and leaving: by the given processes (with this one) and by everything else."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = [os.getpid(), *pids]
        self._start = (0.0, 0.0, 0.0)
        self.ours_cores = self.others_cores = 0.0

    def _now(self) -> tuple[float, float, float]:
        return time.monotonic(), machine_busy_seconds(), sum(process_cpu_seconds(pid) for pid in self._pids)

    def __enter__(self) -> CpuWatch:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        wall, busy, ours = (after - before for after, before in zip(end, self._start, strict=True))
        self.ours_cores = ours / wall
        self.others_cores = max(0.0, busy - ours) / wall


# -- measurements ---------------------------------------------------------------------------------------------------


def warm_up(jobs: Jobs, clips: list[Clip], count: int) -> list[str]:
    """`count` jobs of the first clip at once, then one of each other clip, waited for; the workers that ran them."""
    names = [jobs.submit(clips[0].path.read_bytes()).name for _ in range(count)]
    ran = {metadata_of(operation).worker for operation in jobs.wait_all(names)}
    for clip in clips[1:]:
        ran.add(metadata_of(jobs.wait(jobs.submit(clip.path.read_bytes()).name)).worker)
    return sorted(ran)


def throughput(jobs: Jobs, clip: Clip, count: int) -> dict[str, Any]:
    """`count` jobs of the clip submitted at once; jobs per minute from the first submission to the last finish.

    The finish is the server-stamped update_time of the last job to end (same machine, same clock as the client's
    time.time() at the first submission)."""
    content = clip.path.read_bytes()
    first_submit = time.time()
    names = [jobs.submit(content).name for _ in range(count)]
    submitted = time.time() - first_submit
    done = jobs.wait_all(names)
    metas = [metadata_of(operation) for operation in done]
    texts = [text_of(operation) for operation in done]
    finished = max(seconds(meta.update_time) for meta in metas)
    wall = finished - first_submit
    run_seconds = [seconds(meta.update_time) - seconds(meta.start_time) for meta in metas]
    by_worker = Counter(meta.worker for meta in metas)
    succeeded = sum(text is not None for text in texts)
    return {
        "clip": clip.name,
        "audio_seconds": clip.duration,
        "jobs": count,
        "succeeded": succeeded,
        "submit_seconds": submitted,
        "wall_seconds": wall,
        "jobs_per_minute": count / wall * 60,
        "audio_real_time_factor": count * clip.duration / wall,
        "run_seconds_p50": percentile(run_seconds, 0.5),
        "run_seconds_p95": percentile(run_seconds, 0.95),
        "jobs_by_worker": dict(sorted(by_worker.items())),
        "wer_median": median([word_error_rate(clip.text, text) for text in texts if text is not None]),
    }


def idle_latency(jobs: Jobs, clip: Clip, count: int) -> dict[str, Any]:
    """`count` submissions one at a time, each after the previous job finished and a pause; submit -> running.

    Primary: start_time - create_time from the job's metadata (both stamped by the server or worker on this
    machine's clock). Also: what a client polling GetOperation every 10 ms sees, from before its submit call to the
    first reply that is no longer QUEUED (it includes the submit call, and up to one poll interval)."""
    content = clip.path.read_bytes()
    stamped: list[float] = []
    observed: list[float] = []
    submit_calls: list[float] = []
    for _ in range(count):
        time.sleep(IDLE_PAUSE_SECONDS)
        started = time.perf_counter()
        operation = jobs.submit(content)
        submit_calls.append(time.perf_counter() - started)
        while metadata_of(operation).state == pb.JOB_STATE_QUEUED:
            time.sleep(POLL_SECONDS)
            operation = jobs.get(operation.name)
        observed.append(time.perf_counter() - started)
        meta = metadata_of(jobs.wait(operation.name))
        stamped.append(seconds(meta.start_time) - seconds(meta.create_time))
    return {
        "clip": clip.name,
        "submissions": count,
        "metadata_p50_seconds": percentile(stamped, 0.5),
        "metadata_p95_seconds": percentile(stamped, 0.95),
        "metadata_max_seconds": max(stamped),
        "polled_p50_seconds": percentile(observed, 0.5),
        "polled_p95_seconds": percentile(observed, 0.95),
        "submit_call_p50_seconds": percentile(submit_calls, 0.5),
        "metadata_seconds": stamped,
        "polled_seconds": observed,
    }


def burst(jobs: Jobs, clip: Clip, count: int, queue_size: int) -> dict[str, Any]:
    """`count` submissions released together from as many threads; then every accepted job must be listed and end.

    Refusals are counted by code and reason; lost = accepted jobs that ListOperations does not show done."""
    content = clip.path.read_bytes()
    before = {operation.name for operation in jobs.listed()}
    barrier = threading.Barrier(count)

    def submit(_: int) -> tuple[str | None, dict[str, Any] | None]:
        barrier.wait()
        try:
            return jobs.submit(content).name, None
        except grpc.RpcError as error:
            return None, refusal_of(error)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        outcomes = list(pool.map(submit, range(count)))
    burst_seconds = time.perf_counter() - started
    accepted = [name for name, _ in outcomes if name is not None]
    refusals = [refusal for _, refusal in outcomes if refusal is not None]
    kinds = Counter(f"{refusal['code']} {refusal['reason']}" for refusal in refusals)
    say(f"jobs: burst of {count} (queue {queue_size}): {len(accepted)} accepted, {dict(kinds)}")
    finished = jobs.wait_all(accepted)
    listed = {operation.name: operation for operation in jobs.listed() if operation.name not in before}
    done = [name for name in accepted if name in listed and listed[name].done]
    succeeded = [name for name in accepted if name in listed and text_of(listed[name]) is not None]
    return {
        "clip": clip.name,
        "submissions": count,
        "queue_size": queue_size,
        "burst_seconds": burst_seconds,
        "accepted": len(accepted),
        "refused": len(refusals),
        "refusals_by_kind": dict(sorted(kinds.items())),
        "refusals_all_job_queue_full": all(
            refusal["code"] == "RESOURCE_EXHAUSTED" and refusal["reason"] == "JOB_QUEUE_FULL" for refusal in refusals
        ),
        "refusals_with_retry_info": sum(refusal["retry_after_seconds"] is not None for refusal in refusals),
        "listed": sum(name in listed for name in accepted),
        "listed_not_accepted": len(set(listed) - set(accepted)),
        "done": len(done),
        "succeeded": len(succeeded),
        "waited_done": sum(operation.done for operation in finished),
        "lost": len(accepted) - len(done),
    }


def memory(jobs: Jobs, pid: int, clip: Clip, count: int, mark_every: int = 10) -> dict[str, Any]:
    """`count` jobs submitted at once to an embedded server; its VmRSS while each `mark_every` of them ran.

    VmRSS is sampled from /proc/PID/status every 0.1 s; done jobs are counted with ListOperations(filter
    "done = true") every 0.25 s. Each window runs from one mark (10, 20, ... jobs done) to the next, so the first
    holds the first 10 jobs and the last the last 10: their peaks compare like with like, jobs running in both.
    The reading at each mark is in the JSON too."""
    content = clip.path.read_bytes()
    idle = proc_status_kib(pid, "VmRSS") * 1024
    done_before = len(jobs.listed("done = true"))
    marks: list[dict[str, Any]] = []
    with RssSampler(pid, interval=0.1) as sampler:
        started = time.monotonic()
        names = [jobs.submit(content).name for _ in range(count)]
        next_mark = mark_every
        deadline = time.monotonic() + WAIT_SECONDS
        while next_mark <= count and time.monotonic() < deadline:
            done = len(jobs.listed("done = true")) - done_before
            while done >= next_mark:
                now = time.monotonic()
                rss = proc_status_kib(pid, "VmRSS") * 1024
                window = sampler.between(marks[-1]["at"] if marks else started, now)
                peak = max(window, default=rss)
                marks.append({"jobs_done": done, "at": now, "rss_bytes": rss, "window_peak_bytes": peak})
                say(
                    f"jobs: memory: {done} of {count} jobs done; server VmRSS {rss / 2**20:.0f} MiB, "
                    f"peak {peak / 2**20:.0f} MiB since the last mark"
                )
                next_mark += mark_every
            time.sleep(0.25)
        ended = time.monotonic()
        time.sleep(1.0)
    after = proc_status_kib(pid, "VmRSS") * 1024
    outcomes = jobs.wait_all(names)
    for mark in marks:
        mark["seconds"] = mark.pop("at") - started
    first, last = marks[0], marks[-1]
    return {
        "clip": clip.name,
        "jobs": count,
        "succeeded": sum(text_of(operation) is not None for operation in outcomes),
        "rss_idle_bytes": idle,
        "rss_marks": marks,
        "rss_first_bytes": first["window_peak_bytes"],
        "rss_end_bytes": last["window_peak_bytes"],
        "rss_ratio": last["window_peak_bytes"] / first["window_peak_bytes"],
        "rss_at_first_mark_bytes": first["rss_bytes"],
        "rss_at_end_bytes": last["rss_bytes"],
        "rss_after_bytes": after,
        "rss_peak_sampled_bytes": max(sampler.between(started, ended)),
        "vmhwm_bytes": proc_status_kib(pid, "VmHWM") * 1024,
        "wall_seconds": ended - started,
        "mark_every": mark_every,
    }


# -- the configurations ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How many jobs each measurement runs."""

    short_jobs: int = 40
    minute_jobs: int = 24
    idle: int = 20
    burst: int = 100
    bounded_queue: int = 50
    memory_jobs: int = 60


def measure_throughput(jobs: Jobs, clips: list[Clip], plan: Plan, label: str, pids: list[int]) -> list[dict[str, Any]]:
    """Throughput on each clip, in order, with the CPU the bench's processes (`pids`, this one) and all others used."""
    rows = []
    for clip in clips:
        count = plan.short_jobs if clip.name == "10s" else plan.minute_jobs
        say(f"jobs: {label}: {count} jobs of the {clip.name} clip at once")
        with CpuWatch(pids) as cpu:
            row = throughput(jobs, clip, count)
        row |= {"cpu_cores_ours": cpu.ours_cores, "cpu_cores_others": cpu.others_cores}
        say(
            f"jobs: {label}, {clip.name}: {row['jobs_per_minute']:.1f} jobs/min "
            f"({row['audio_real_time_factor']:.1f}x real time), by worker {list(row['jobs_by_worker'].values())}; "
            f"CPU {cpu.ours_cores:.2f} cores ours, {cpu.others_cores:.2f} others'"
        )
        rows.append({"configuration": label, **row})
    return rows


def embedded(clips: list[Clip], plan: Plan) -> dict[str, Any]:
    """One server at a time: jobs_workers=1 then 2 (throughput; idle latency and a default-size burst on the
    second), a server with the bounded queue (burst), and a fresh default server (memory)."""
    short = clips[0]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for workers in (1, 2):
        with folders() as root, ServerProcess(process_settings(root, "server", jobs_workers=str(workers))) as server:
            assert server.channel is not None
            jobs = Jobs(server.channel)
            warm_up(jobs, clips, 2)
            rows += measure_throughput(jobs, clips, plan, f"embedded, jobs_workers={workers}", [server.pid])
            if workers == 2:
                say(f"jobs: embedded: {plan.idle} idle submissions of the {short.name} clip")
                result["idle"] = idle_latency(jobs, short, plan.idle)
                result["burst_default"] = burst(jobs, short, plan.burst, 1000)
    settings = {"jobs_queue_size": str(plan.bounded_queue)}
    with folders() as root, ServerProcess(process_settings(root, "server", **settings)) as server:
        assert server.channel is not None
        jobs = Jobs(server.channel)
        warm_up(jobs, [short], 2)
        result["burst_bounded"] = burst(jobs, short, plan.burst, plan.bounded_queue)
    minute = clips[-1]
    with folders() as root, ServerProcess(process_settings(root, "server")) as server:
        assert server.channel is not None
        jobs = Jobs(server.channel)
        warm_up(jobs, [minute], 2)
        say(f"jobs: memory: {plan.memory_jobs} jobs of the {minute.name} clip on a fresh default server")
        result["memory"] = memory(jobs, server.pid, minute, plan.memory_jobs)
    return {"throughput": rows, **result}


def celery(clips: list[Clip], plan: Plan) -> dict[str, Any]:
    """A real redis-server, one server, one worker process then two (each jobs_workers=1, local_workers=1):
    throughput with each; idle latency and a default-size burst with two; then a server with the bounded queue."""
    short = clips[0]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    with folders() as root, RedisServer() as redis, ExitStack() as workers:
        result["redis"] = redis.version
        broker = {"broker_url": redis.url}
        pids = []
        with ServerProcess(process_settings(root, "server", **broker)) as server:
            assert server.channel is not None
            jobs = Jobs(server.channel)
            for index in range(2):
                settings = process_settings(root, f"worker{index}", **broker, **WORKER_SETTINGS)
                pids.append(workers.enter_context(WorkerProcess(settings)).pid)
                ran = warm_up(jobs, clips, 2 * (index + 1))
                say(f"jobs: Celery warm-up ran on {len(ran)} worker(s)")
                label = f"Celery, {index + 1} worker process" + ("es" if index else "")
                rows += measure_throughput(jobs, clips, plan, label, [server.pid, redis.pid, *pids])
            say(f"jobs: Celery: {plan.idle} idle submissions of the {short.name} clip")
            result["idle"] = idle_latency(jobs, short, plan.idle)
            result["burst_default"] = burst(jobs, short, plan.burst, 1000)
        settings = process_settings(root, "server-bounded", **broker, jobs_queue_size=str(plan.bounded_queue))
        with ServerProcess(settings) as bounded:
            assert bounded.channel is not None
            result["burst_bounded"] = burst(Jobs(bounded.channel), short, plan.burst, plan.bounded_queue)
        result["worker_pids"] = pids
    return {"throughput": rows, **result}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs per minute with 2 workers over 1, for each mode and clip."""
    found = []
    for mode, one, two in (
        ("embedded", "embedded, jobs_workers=1", "embedded, jobs_workers=2"),
        ("Celery", "Celery, 1 worker process", "Celery, 2 worker processes"),
    ):
        for clip in sorted({row["clip"] for row in rows}):
            rates = {row["configuration"]: row["jobs_per_minute"] for row in rows if row["clip"] == clip}
            if one in rates and two in rates:
                found.append(
                    {"mode": mode, "clip": clip, "one": rates[one], "two": rates[two], "ratio": rates[two] / rates[one]}
                )
    return found


def run(minute: Clip, plan: Plan | None = None) -> dict[str, Any]:
    """Every jobs measurement, embedded then Celery, one run."""
    plan = plan or Plan()
    clips = [test_clip(), minute]
    done = embedded(clips, plan)
    queued = celery(clips, plan)
    rows = done.pop("throughput") + queued.pop("throughput")
    return {
        "clips": {
            clip.name: {"file": str(clip.path.relative_to(REPO)), "audio_seconds": clip.duration} for clip in clips
        },
        "plan": asdict(plan),
        "cores": os.cpu_count(),
        "celery_version": metadata.version("celery"),
        "embedded_settings": "default settings (local_workers=2, 1 CPU thread each) but jobs_workers",
        "celery_settings": "one server; worker processes with jobs_workers=1, local_workers=1 (2 CPU threads each)",
        "throughput": rows,
        "ratios": ratios(rows),
        "embedded": done,
        "celery": queued,
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.jobs [--quick]`: run it and write bench/results[/quick]/jobs.json (without the report)."""
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer jobs per measurement")
    args = parser.parse_args(argv)
    plan = quick_plan() if args.quick else Plan()
    write_json((RESULTS / "quick" if args.quick else RESULTS) / "jobs.json", run(load_clips()["60s"], plan))


def quick_plan() -> Plan:
    """The smoke run's counts."""
    return Plan(short_jobs=8, minute_jobs=4, idle=5, burst=30, bounded_queue=10, memory_jobs=20)


if __name__ == "__main__":
    main()

"""The Python client's jobs API (submit, get, list, wait, cancel, delete, futures) against real servers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import google.longrunning.operations_proto_pb2 as lro
import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.conftest import DATA, Fixture, StartServer
from tests.fakes.file_server import FileServer
from tests.helpers import assert_has_words
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client import (
    AsyncTranscribeClient,
    Job,
    JobCancelledError,
    JobState,
    TranscribeClient,
    TranscribeError,
    job_to_dict,
    jobs_filter,
)

WAV = "speech_en.wav"
NAME = re.compile(r"^operations/[0-9a-f]{32}$")
UNREACHABLE = "127.0.0.1:1"


def operation_of(
    state: pb.JobState.ValueType, *, response: pb.Transcript | None = None, error: status_pb2.Status | None = None
) -> lro.Operation:
    """An Operation as the server builds it, with metadata and a result."""
    metadata = pb.TranscriptionJobMetadata(
        state=state, progress_percent=40, uri="https://example.com/a.wav", attempt=2, worker="w-1"
    )
    metadata.create_time.FromSeconds(1_700_000_000)
    metadata.start_time.FromSeconds(1_700_000_005)
    metadata.audio_duration.FromMilliseconds(10_500)
    operation = lro.Operation(name="operations/" + "ab" * 16, done=response is not None or error is not None)
    operation.metadata.Pack(metadata)
    if response is not None:
        operation.response.Pack(pb.SubmitTranscriptionResponse(transcript=response))
    if error is not None:
        operation.error.CopyFrom(error)
    return operation


def failed_status(code: int, message: str, reason: str) -> status_pb2.Status:
    """A google.rpc.Status with one ErrorInfo, as the server puts in a failed job's Operation."""
    status = status_pb2.Status(code=code, message=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="transcribe.v1", metadata={"k": "v"}))
    status.details.append(detail)
    return status


def test_a_succeeded_operation_reads_as_a_job_with_its_transcript() -> None:
    """Job.from_operation reads the state, progress, times, duration, URI, attempt, worker and the transcript."""
    job = Job.from_operation(operation_of(pb.JOB_STATE_SUCCEEDED, response=pb.Transcript(text="hello")))
    assert job.state is JobState.SUCCEEDED
    assert job.done
    assert job.progress_percent == 40
    assert job.create_time is not None
    assert job.create_time.timestamp() == 1_700_000_000
    assert job.create_time.utcoffset() == timedelta(0)
    assert job.start_time is not None
    assert job.start_time.timestamp() == 1_700_000_005
    assert job.update_time is None
    assert job.audio_duration == timedelta(seconds=10.5)
    assert (job.uri, job.attempt, job.worker) == ("https://example.com/a.wav", 2, "w-1")
    assert job.transcript is not None
    assert job.transcript.text == "hello"
    assert job.error is None
    data = job_to_dict(job)
    assert data["state"] == "succeeded"
    assert data["create_time"] == "2023-11-14T22:13:20Z"
    assert data["audio_duration"] == 10.5
    assert data["transcript"]["text"] == "hello"


def test_a_failed_or_cancelled_operation_carries_its_error() -> None:
    """A failed job's error is a TranscribeError with code, message and reason; a cancelled one is JobCancelledError."""
    failed = Job.from_operation(
        operation_of(pb.JOB_STATE_FAILED, error=failed_status(code_pb2.INVALID_ARGUMENT, "bad", "AUDIO_UNDECODABLE"))
    )
    assert failed.state is JobState.FAILED
    assert failed.transcript is None
    assert failed.error is not None
    assert not isinstance(failed.error, JobCancelledError)
    assert (failed.error.code, failed.error.message) == (grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert (failed.error.reason, failed.error.domain, failed.error.metadata) == (
        "AUDIO_UNDECODABLE",
        "transcribe.v1",
        {"k": "v"},
    )
    assert job_to_dict(failed)["error"]["reason"] == "AUDIO_UNDECODABLE"
    cancelled = Job.from_operation(
        operation_of(pb.JOB_STATE_CANCELLED, error=failed_status(code_pb2.CANCELLED, "cancelled", "JOB_CANCELLED"))
    )
    assert cancelled.state is JobState.CANCELLED
    assert isinstance(cancelled.error, JobCancelledError)
    assert cancelled.error.exit_code == 65
    running = Job.from_operation(operation_of(pb.JOB_STATE_RUNNING))
    assert (running.state, running.done, running.transcript, running.error) == (JobState.RUNNING, False, None, None)


def test_list_filters_join_states_and_respect_done() -> None:
    """States become OR-ed `state = X` terms; done narrows them or stands alone; an impossible pair matches nothing."""
    assert jobs_filter() == ""
    assert jobs_filter(done=True) == "done = true"
    assert jobs_filter(done=False) == "done = false"
    assert jobs_filter("queued") == "state = QUEUED"
    assert jobs_filter(["JOB_STATE_FAILED", JobState.CANCELLED, pb.JOB_STATE_FAILED]) == (
        "state = FAILED OR state = CANCELLED"
    )
    assert jobs_filter(["queued", "succeeded"], done=True) == "state = SUCCEEDED"
    assert jobs_filter("succeeded", done=False) is None
    with pytest.raises(ValueError, match="unknown job state"):
        jobs_filter("finished")


def test_a_call_names_exactly_one_audio_source() -> None:
    """Audio and uri= together, neither, an empty URI, or a streamed URI are refused before anything is sent."""
    with TranscribeClient(UNREACHABLE) as client:
        with pytest.raises(ValueError, match="not both"):
            client.submit(b"RIFF", uri="https://example.com/a.wav")
        with pytest.raises(ValueError, match="or uri="):
            client.submit()
        with pytest.raises(ValueError, match="empty"):
            client.transcribe(uri=" ")
        with pytest.raises(ValueError, match="never streamed"):
            client.transcribe(uri="https://example.com/a.wav", stream=True)
        with pytest.raises(ValueError, match="page_size"):
            client.list_jobs(page_size=1001)
        with pytest.raises(ValueError, match="timeout"):
            client.wait_job("operations/x", timeout=-1)


async def test_a_submitted_file_is_waited_for_until_its_transcript(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """The asyncio client uploads a file as a job, reports its progress while waiting and returns its transcript."""
    server = await start_server()
    fixture = spoken[WAV]
    async with AsyncTranscribeClient(server.target, chunk_size=16 * 1024) as client:
        sent: list[tuple[int, int | None]] = []
        job = await client.submit(fixture.path, language="en", progress=lambda done, total: sent.append((done, total)))
        assert NAME.match(job.name)
        assert job.state in {JobState.QUEUED, JobState.RUNNING}
        assert not job.done
        assert len(sent) > 1  # streamed in chunks
        assert sent[-1] == (fixture.path.stat().st_size, fixture.path.stat().st_size)
        seen: list[Job] = []
        done = await client.wait_job(job.name, on_progress=seen.append)
        assert done.state is JobState.SUCCEEDED
        assert done.transcript is not None
        assert_has_words(done.transcript.text, fixture.expected_words)
        assert seen[-1].done
        assert all(not report.done for report in seen[:-1])
        assert done.audio_duration is not None
        assert done.audio_duration.total_seconds() == pytest.approx(fixture.duration, abs=0.1)
        assert done.attempt == 1
        fetched = await client.get_job(job.name)
        assert (fetched.state, fetched.progress_percent) == (JobState.SUCCEEDED, 100)
        future = await client.job_future(job.name)
        assert await future.done()
        assert_has_words((await future.result()).text, fixture.expected_words)
        assert await future.exception() is None
        assert not await future.cancel()


async def test_the_sync_client_submits_bytes_and_a_future_gives_the_transcript(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Small bytes go as one SubmitTranscription; the sync JobFuture waits for the transcript and then is done."""
    server = await start_server()
    fixture = spoken["speech_en.ogg"]

    def run() -> tuple[Job, str, bool, bool]:
        with TranscribeClient(server.target) as client:
            job = client.submit(fixture.path.read_bytes())
            future = client.job_future(job)
            transcript = future.result(timeout=120)
            return future.metadata(), transcript.text, future.done(), future.cancelled()

    job, text, done, cancelled = await asyncio.to_thread(run)
    assert_has_words(text, fixture.expected_words)
    assert (job.state, done, cancelled) == (JobState.SUCCEEDED, True, False)


async def test_a_failed_job_raises_what_a_direct_call_raises(start_server: StartServer) -> None:
    """Bytes that are not audio fail the job; wait_job raises the code and reason Transcribe raises for them, and
    wait_job_done returns the job with that error."""
    server = await start_server()
    junk = (DATA / "not_audio.txt").read_bytes()
    async with AsyncTranscribeClient(server.target) as client:
        with pytest.raises(TranscribeError) as direct:
            await client.transcribe(junk)
        job = await client.submit(junk)
        with pytest.raises(TranscribeError) as waited:
            await client.wait_job(job.name)
        returned = await client.wait_job_done(job.name)
        failed = await client.get_job(job.name)
        future = await client.job_future(failed)
        with pytest.raises(TranscribeError) as from_future:
            await future.result()
    assert direct.value.reason == "AUDIO_UNDECODABLE"
    assert returned.done
    for error in (waited.value, returned.error, failed.error, from_future.value):
        assert error is not None
        assert not isinstance(error, JobCancelledError)
        assert (error.code, error.reason, error.domain) == (direct.value.code, direct.value.reason, "transcribe.v1")
    assert failed.state is JobState.FAILED


async def test_a_cancelled_queued_job_never_starts(start_server: StartServer, files: FileServer) -> None:
    """With the only job worker held, a queued upload cancels at once and never runs; the running job then stops."""
    server = await start_server(jobs_workers=1, **files.settings())
    async with AsyncTranscribeClient(server.target) as client:
        running = await client.submit(uri=files.url("/held.wav"))
        assert await asyncio.to_thread(files.started.wait, 30), "the held job did not start fetching"
        queued = await client.submit(DATA / WAV)
        assert queued.state is JobState.QUEUED
        await client.cancel_job(queued.name)
        with pytest.raises(JobCancelledError) as cancelled:
            await client.wait_job(queued.name)
        assert (cancelled.value.code, cancelled.value.reason) == (grpc.StatusCode.CANCELLED, "JOB_CANCELLED")
        after = await client.get_job(queued.name)
        assert (after.state, after.done, after.attempt, after.start_time) == (JobState.CANCELLED, True, 0, None)
        future = await client.job_future(running.name)
        assert (await future.metadata()).state is JobState.RUNNING
        assert await future.cancel()
        assert isinstance(await future.exception(timeout=60), JobCancelledError)
        assert await future.cancelled()
    assert files.requests == ["/held.wav"]


async def test_wait_gives_up_with_timeout_error_and_the_job_goes_on(
    start_server: StartServer, files: FileServer
) -> None:
    """wait_job raises TimeoutError when its timeout passes first (at once for 0), and the job is still running."""
    server = await start_server(jobs_workers=1, **files.settings())

    def run() -> tuple[str, str, Job]:
        with TranscribeClient(server.target) as client:
            job = client.submit(uri=files.url("/held.wav"))
            assert files.started.wait(30), "the held job did not start fetching"
            with pytest.raises(TimeoutError) as at_once:
                client.wait_job(job.name, timeout=0)
            with pytest.raises(TimeoutError) as shortly:
                client.wait_job(job.name, timeout=0.3, on_progress=lambda _: None)
            still = client.get_job(job.name)
            client.delete_job(job.name)
            return str(at_once.value), str(shortly.value), still

    at_once, shortly, still = await asyncio.to_thread(run)
    assert "not done after 0 s" in at_once
    assert "not done after 0.3 s (running" in shortly
    assert still.state is JobState.RUNNING


async def test_list_filters_by_state_and_follows_pages(start_server: StartServer, files: FileServer) -> None:
    """list_jobs lists newest first across pages of one, filters by state and done, and deletes empty the list."""
    server = await start_server(jobs_workers=1, **files.settings())

    def run() -> None:
        with TranscribeClient(server.target) as client:
            running = client.submit(uri=files.url("/held.wav")).name
            assert files.started.wait(30), "the held job did not start fetching"
            queued = [client.submit(uri=files.url("/speech.wav")).name for _ in range(3)]
            newest_first = [*reversed(queued), running]
            assert [job.name for job in client.list_jobs()] == newest_first
            assert [job.name for job in client.list_jobs(page_size=1)] == newest_first
            assert [job.name for job in client.list_jobs(state="queued", page_size=2)] == queued[::-1]
            assert [job.name for job in client.list_jobs(state=JobState.RUNNING)] == [running]
            assert [job.name for job in client.list_jobs(state=["running", "queued"])] == newest_first
            assert [job.name for job in client.list_jobs(done=False, page_size=3)] == newest_first
            assert list(client.list_jobs(done=True)) == []
            assert list(client.list_jobs(state="succeeded", done=False)) == []
            for name in newest_first:
                client.delete_job(name)
            assert list(client.list_jobs()) == []

    await asyncio.to_thread(run)
    async with AsyncTranscribeClient(server.target) as client:
        assert [job async for job in client.list_jobs(page_size=1)] == []


async def test_a_deleted_job_is_not_found(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """After delete_job, get_job, wait_job and cancel_job raise NOT_FOUND with reason JOB_NOT_FOUND."""
    server = await start_server()
    async with AsyncTranscribeClient(server.target) as client:
        job = await client.submit(spoken[WAV].path)
        await client.wait_job(job.name)
        await client.delete_job(job.name)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.get_job(job.name),
            lambda: client.wait_job(job.name),
            lambda: client.cancel_job(job.name),
        ]
        for call in calls:
            with pytest.raises(TranscribeError) as missing:
                await call()
            assert (missing.value.code, missing.value.reason) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
        assert [found async for found in client.list_jobs()] == []


async def test_a_uri_is_transcribed_directly_or_as_a_job(
    start_server: StartServer, spoken: dict[str, Fixture], files: FileServer
) -> None:
    """transcribe(uri=) and submit(uri=) have the server fetch the audio; the job shows the URI without its query."""
    server = await start_server(**files.settings())
    expected = spoken[WAV].expected_words
    async with AsyncTranscribeClient(server.target) as client:
        assert_has_words((await client.transcribe(uri=files.url("/speech.wav"))).text, expected)
        job = await client.submit(uri=files.url("/speech.wav") + "?signature=s3cret")
        assert job.uri == files.url("/speech.wav")
        done = await client.wait_job(job.name)
        assert done.transcript is not None
        assert_has_words(done.transcript.text, expected)
        with pytest.raises(TranscribeError) as missing:
            await client.transcribe(uri=files.url("/missing.wav"))
        assert (missing.value.code, missing.value.reason) == (grpc.StatusCode.NOT_FOUND, "URI_NOT_FOUND")


async def test_a_forbidden_or_invalid_uri_is_refused_at_once(start_server: StartServer) -> None:
    """Without an allowlist a loopback URI is PERMISSION_DENIED (URI_FORBIDDEN) and ftp is INVALID_ARGUMENT
    (URI_INVALID), for a direct call and a submission alike."""
    server = await start_server()
    cases = [
        ("http://127.0.0.1/a.wav", grpc.StatusCode.PERMISSION_DENIED, "URI_FORBIDDEN"),
        ("ftp://example.com/a.wav", grpc.StatusCode.INVALID_ARGUMENT, "URI_INVALID"),
    ]

    def run() -> list[tuple[grpc.StatusCode, str]]:
        outcomes: list[tuple[grpc.StatusCode, str]] = []
        with TranscribeClient(server.target) as client:
            for uri, _, _ in cases:
                for call in (client.transcribe, client.submit):
                    with pytest.raises(TranscribeError) as refused:
                        call(uri=uri)
                    outcomes.append((refused.value.code, refused.value.reason))
            assert list(client.list_jobs()) == []
        return outcomes

    outcomes = await asyncio.to_thread(run)
    assert outcomes == [(code, reason) for _, code, reason in cases for _ in range(2)]

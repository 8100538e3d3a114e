"""Jobs on the embedded default: google.longrunning.Operations over real servers, the real model and real audio."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_proto_pb2 as lro
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from service.jobs.audio import JobAudio
from service.jobs.model import Job
from tests.conftest import DATA, Fixture, RunningServer, StartServer
from tests.fakes.file_server import FileServer
from tests.helpers import assert_has_words, error_details
from transcribe.v1 import transcribe_service_pb2 as pb

WAV = "speech_en.wav"


def metadata_of(operation: lro.Operation) -> pb.TranscriptionJobMetadata:
    """The job metadata an Operation carries."""
    metadata = pb.TranscriptionJobMetadata()
    assert operation.metadata.Unpack(metadata)
    return metadata


def reason_of(status: status_pb2.Status) -> str:
    """The ErrorInfo reason of a google.rpc.Status."""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "transcribe.v1"
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the status")


async def wait_done(server: RunningServer, name: str, seconds: float = 120.0) -> lro.Operation:
    """Wait for the job with WaitOperation, calling again until it is done."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        timeout = duration_pb2.Duration(seconds=10)
        operation: lro.Operation = await server.operations.WaitOperation(
            lro.WaitOperationRequest(name=name, timeout=timeout)
        )
        if operation.done:
            return operation
    raise AssertionError(f"{name} did not finish in {seconds} s")


async def wait_state(server: RunningServer, name: str, state: pb.JobState.ValueType) -> lro.Operation:
    """Poll GetOperation until the job reaches `state` (it is driven there by the test, not by time)."""
    for _ in range(600):
        operation: lro.Operation = await server.operations.GetOperation(lro.GetOperationRequest(name=name))
        if metadata_of(operation).state == state:
            return operation
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {pb.JobState.Name(state)}")


async def test_a_submitted_recording_becomes_a_transcript(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """A unary submission returns a queued Operation at once, and waiting on it gives the transcript and metadata."""
    server = await start_server()
    fixture = spoken[WAV]
    request = pb.SubmitTranscriptionRequest(content=fixture.path.read_bytes())
    operation = await server.stub.SubmitTranscription(request)
    assert operation.name.startswith("operations/")
    assert not operation.done
    assert metadata_of(operation).state == pb.JOB_STATE_QUEUED
    done = await wait_done(server, operation.name)
    response = pb.SubmitTranscriptionResponse()
    assert done.response.Unpack(response)
    assert_has_words(response.transcript.text, fixture.expected_words)
    metadata = metadata_of(done)
    assert metadata.state == pb.JOB_STATE_SUCCEEDED
    assert metadata.progress_percent == 100
    assert metadata.attempt == 1
    assert metadata.worker
    assert metadata.create_time.ToNanoseconds() <= metadata.start_time.ToNanoseconds()
    assert metadata.start_time.ToNanoseconds() <= metadata.update_time.ToNanoseconds()
    assert metadata.expire_time.ToNanoseconds() > metadata.update_time.ToNanoseconds()
    assert metadata.audio_duration.ToNanoseconds() / 1e9 == pytest.approx(fixture.duration, abs=0.1)
    assert server.jobs.audio.names() == []  # the audio goes as soon as the job is done


async def test_an_uploaded_stream_becomes_a_job(start_server: StartServer, spoken: dict[str, Fixture]) -> None:
    """SubmitTranscriptionStream stores a chunked upload as a job whose result is the transcript."""
    server = await start_server()
    fixture = spoken["speech_en.ogg"]
    data = fixture.path.read_bytes()

    async def requests() -> Iterator[pb.SubmitTranscriptionStreamRequest]:  # type: ignore[misc]
        yield pb.SubmitTranscriptionStreamRequest(config=pb.TranscriptionConfig(language_code="en"))
        for start in range(0, len(data), 4096):
            yield pb.SubmitTranscriptionStreamRequest(audio_content=data[start : start + 4096])

    operation = await server.stub.SubmitTranscriptionStream(requests())
    done = await wait_done(server, operation.name)
    response = pb.SubmitTranscriptionResponse()
    assert done.response.Unpack(response)
    assert_has_words(response.transcript.text, fixture.expected_words)


async def test_a_failed_job_carries_the_status_a_direct_call_gets(start_server: StartServer) -> None:
    """Bytes that are not audio fail the job with the code and reason the unary call fails with."""
    server = await start_server()
    junk = (DATA / "not_audio.txt").read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as direct:
        await server.stub.Transcribe(pb.TranscribeRequest(content=junk))
    info, _ = error_details(direct.value)
    operation = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(content=junk))
    done = await wait_done(server, operation.name)
    assert done.WhichOneof("result") == "error"
    assert done.error.code == direct.value.code().value[0]
    assert reason_of(done.error) == info.reason == "AUDIO_UNDECODABLE"
    assert metadata_of(done).state == pb.JOB_STATE_FAILED


async def test_a_bad_config_or_uri_is_refused_before_any_job_exists(start_server: StartServer) -> None:
    """Invalid options, a missing source and a forbidden URI fail the submission itself; no job is stored."""
    server = await start_server()
    bad = pb.SubmitTranscriptionRequest(config=pb.TranscriptionConfig(temperature=3.0), content=b"x")
    cases = [
        (bad, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"),
        (pb.SubmitTranscriptionRequest(), grpc.StatusCode.INVALID_ARGUMENT, "STREAM_OUT_OF_ORDER"),
        (pb.SubmitTranscriptionRequest(content=b""), grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_EMPTY"),
        (pb.SubmitTranscriptionRequest(uri="ftp://example.com/a.wav"), grpc.StatusCode.INVALID_ARGUMENT, "URI_INVALID"),
        (
            pb.SubmitTranscriptionRequest(uri="http://127.0.0.1/a.wav"),
            grpc.StatusCode.PERMISSION_DENIED,
            "URI_FORBIDDEN",
        ),
    ]
    for request, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.stub.SubmitTranscription(request)
        assert refused.value.code() == code
        assert error_details(refused.value)[0].reason == reason
    listed = await server.operations.ListOperations(lro.ListOperationsRequest(name="operations"))
    assert list(listed.operations) == []


async def test_a_job_from_a_uri_is_fetched_when_it_runs(
    start_server: StartServer, spoken: dict[str, Fixture], files: FileServer
) -> None:
    """A URI job fetches the audio from the (allowlisted) loopback server and shows the URI without its query."""
    server = await start_server(**files.settings())
    uri = files.url("/speech.wav") + "?X-Signature=secret-token"
    operation = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=uri))
    assert metadata_of(operation).uri == files.url("/speech.wav")
    done = await wait_done(server, operation.name)
    response = pb.SubmitTranscriptionResponse()
    assert done.response.Unpack(response)
    assert_has_words(response.transcript.text, spoken[WAV].expected_words)
    assert "secret-token" not in str(done)
    assert files.requests == ["/speech.wav?X-Signature=secret-token"]


async def test_transcribe_takes_a_uri_directly(
    start_server: StartServer, spoken: dict[str, Fixture], files: FileServer
) -> None:
    """The unary Transcribe fetches a URI and answers with its transcript; a missing file is NOT_FOUND."""
    server = await start_server(**files.settings())
    response = await server.stub.Transcribe(pb.TranscribeRequest(uri=files.url("/speech.wav")))
    assert_has_words(response.transcript.text, spoken[WAV].expected_words)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.stub.Transcribe(pb.TranscribeRequest(uri=files.url("/missing.wav")))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(missing.value)[0].reason == "URI_NOT_FOUND"


async def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(
    start_server: StartServer, files: FileServer
) -> None:
    """With one job worker held by a fetch, a queued job cancels at once and the running one stops."""
    server = await start_server(jobs_workers=1, **files.settings())
    running = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
    await wait_state(server, running.name, pb.JOB_STATE_RUNNING)
    assert await asyncio.to_thread(files.started.wait, 30)
    queued = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/speech.wav")))
    await server.operations.CancelOperation(lro.CancelOperationRequest(name=queued.name))
    cancelled = await server.operations.GetOperation(lro.GetOperationRequest(name=queued.name))
    assert cancelled.done
    assert cancelled.error.code == code_pb2.CANCELLED
    assert reason_of(cancelled.error) == "JOB_CANCELLED"
    assert metadata_of(cancelled).attempt == 0
    await server.operations.CancelOperation(lro.CancelOperationRequest(name=running.name))
    stopped = await wait_done(server, running.name)
    assert stopped.error.code == code_pb2.CANCELLED
    assert metadata_of(stopped).state == pb.JOB_STATE_CANCELLED
    assert files.requests == ["/held.wav"]  # the cancelled queued job never fetched


async def test_a_full_job_queue_refuses_with_retry_info(start_server: StartServer, files: FileServer) -> None:
    """Beyond jobs_queue_size waiting jobs a submission gets RESOURCE_EXHAUSTED, JOB_QUEUE_FULL and RetryInfo."""
    server = await start_server(jobs_workers=1, jobs_queue_size=2, **files.settings())
    held = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
    await wait_state(server, held.name, pb.JOB_STATE_RUNNING)
    waiting = [
        await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/speech.wav")))
        for _ in range(2)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(content=b"RIFF"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(refused.value)[0].reason == "JOB_QUEUE_FULL"
    raw = dict(refused.value.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    files.release()
    for operation in [held, *waiting]:
        assert (await wait_done(server, operation.name)).HasField("response")


async def test_list_filters_by_state_and_pages(start_server: StartServer, files: FileServer) -> None:
    """ListOperations returns newest first, filters on state and done, and pages with tokens until the end."""
    server = await start_server(jobs_workers=1, **files.settings())
    held = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
    await wait_state(server, held.name, pb.JOB_STATE_RUNNING)
    queued = [
        (await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/speech.wav")))).name
        for _ in range(5)
    ]
    names: list[str] = []
    token = ""
    while True:
        page = await server.operations.ListOperations(
            lro.ListOperationsRequest(name="operations", filter="state = QUEUED", page_size=2, page_token=token)
        )
        assert len(page.operations) <= 2
        names += [op.name for op in page.operations]
        token = page.next_page_token
        if not token:
            break
    assert names == queued[::-1]
    running = await server.operations.ListOperations(lro.ListOperationsRequest(filter="state = JOB_STATE_RUNNING"))
    assert [op.name for op in running.operations] == [held.name]
    not_done = await server.operations.ListOperations(lro.ListOperationsRequest(filter="done = false"))
    assert len(not_done.operations) == 6
    either = await server.operations.ListOperations(
        lro.ListOperationsRequest(filter="state = RUNNING OR state = queued")
    )
    assert len(either.operations) == 6
    for bad in ("state = SLEEPING", "progress > 5", "done = maybe"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.operations.ListOperations(lro.ListOperationsRequest(filter=bad))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(refused.value)[0].reason == "INVALID_JOB_QUERY"
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await server.operations.ListOperations(lro.ListOperationsRequest(page_token="not-a-token"))
    assert error_details(bad_token.value)[0].reason == "INVALID_JOB_QUERY"
    for name in [held.name, *queued]:
        await server.operations.CancelOperation(lro.CancelOperationRequest(name=name))
    for name in [held.name, *queued]:
        await wait_done(server, name)


async def test_wait_returns_the_latest_state_when_its_timeout_passes(
    start_server: StartServer, files: FileServer
) -> None:
    """WaitOperation with a short timeout on a running job returns it not done; unknown names are NOT_FOUND."""
    server = await start_server(**files.settings())
    held = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
    await wait_state(server, held.name, pb.JOB_STATE_RUNNING)
    short = duration_pb2.Duration(nanos=200_000_000)
    latest = await server.operations.WaitOperation(lro.WaitOperationRequest(name=held.name, timeout=short))
    assert not latest.done
    assert metadata_of(latest).state == pb.JOB_STATE_RUNNING
    for name in ("operations/" + "0" * 32, "jobs/123", ""):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await server.operations.GetOperation(lro.GetOperationRequest(name=name))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_details(missing.value)[0].reason == "JOB_NOT_FOUND"
    files.release()
    assert (await wait_done(server, held.name)).HasField("response")


async def test_delete_removes_the_job_and_its_audio(start_server: StartServer, files: FileServer) -> None:
    """DeleteOperation on a queued job removes its record and stored audio at once."""
    server = await start_server(jobs_workers=1, **files.settings())
    held = await server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(uri=files.url("/held.wav")))
    await wait_state(server, held.name, pb.JOB_STATE_RUNNING)
    queued = await server.stub.SubmitTranscription(
        pb.SubmitTranscriptionRequest(content=(DATA / "speech_en.wav").read_bytes())
    )
    assert len(server.jobs.audio.names()) == 1
    await server.operations.DeleteOperation(lro.DeleteOperationRequest(name=queued.name))
    assert server.jobs.audio.names() == []
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.operations.GetOperation(lro.GetOperationRequest(name=queued.name))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    await server.operations.DeleteOperation(lro.DeleteOperationRequest(name=held.name))
    with pytest.raises(grpc.aio.AioRpcError):
        await server.operations.GetOperation(lro.GetOperationRequest(name=held.name))


async def test_finished_jobs_are_deleted_after_the_retention_time(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Once its retention time has passed, the store's upkeep deletes a finished job."""
    server = await start_server(jobs_retention_seconds=60)
    operation = await server.stub.SubmitTranscription(
        pb.SubmitTranscriptionRequest(content=spoken[WAV].path.read_bytes())
    )
    done = await wait_done(server, operation.name)
    expires = metadata_of(done).expire_time.ToNanoseconds() / 1e9
    await server.jobs.tidy(expires - 1)
    assert (await server.operations.GetOperation(lro.GetOperationRequest(name=operation.name))).done
    await server.jobs.tidy(expires + 1)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await server.operations.GetOperation(lro.GetOperationRequest(name=operation.name))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_audio_folder_drops_only_partial_uploads_that_stopped_long_ago(tmp_path: Path) -> None:
    """Opening the jobs' audio folder deletes partial uploads untouched for an hour, never a fresh one (which a
    server sharing the folder may still be receiving) nor a stored job's audio."""
    folder = tmp_path / "audio"
    folder.mkdir()
    old, fresh, stored = folder / "a.upload", folder / "b.upload", folder / "c.audio"
    for path in (old, fresh, stored):
        path.write_bytes(b"x")
    long_ago = time.time() - 2 * 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(stored, (long_ago, long_ago))
    audio = JobAudio(folder)
    audio.open()
    assert audio.names() == ["b.upload", "c.audio"]
    for path in (fresh, stored):
        path.unlink()


async def test_an_upload_cancelled_midway_never_becomes_a_job(start_server: StartServer) -> None:
    """A client that cancels SubmitTranscriptionStream mid-upload leaves no job and no audio behind."""
    server = await start_server()
    data = (DATA / "speech_en.wav").read_bytes()
    forever = asyncio.Event()

    async def requests() -> AsyncIterator[pb.SubmitTranscriptionStreamRequest]:
        yield pb.SubmitTranscriptionStreamRequest(config=pb.TranscriptionConfig())
        for start in range(0, 32_000, 8_000):
            yield pb.SubmitTranscriptionStreamRequest(audio_content=data[start : start + 8_000])
        await forever.wait()

    call = server.stub.SubmitTranscriptionStream(requests(), timeout=60)
    folder = server.jobs.audio.folder
    for _ in range(600):
        if any(folder.glob("*.upload")):  # the upload has begun (writes are buffered, so its size says nothing)
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the upload never reached the server")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(600):
        if not server.jobs.audio.names():
            break
        await asyncio.sleep(0.01)
    assert server.jobs.audio.names() == []
    listed = await server.operations.ListOperations(lro.ListOperationsRequest())
    assert list(listed.operations) == []


async def test_a_submission_cancelled_while_its_job_is_stored_leaves_a_whole_job(
    start_server: StartServer, spoken: dict[str, Fixture], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that cancels while the server writes its job's record does not leave half a job: the job is stored
    with its audio and runs to a transcript (the cancel came after the whole recording had arrived)."""
    server = await start_server()
    store = server.jobs.store
    adding, release = asyncio.Event(), asyncio.Event()
    add = store.add

    async def held_add(job: Job, max_queued: int) -> None:
        adding.set()
        await release.wait()
        await add(job, max_queued)

    monkeypatch.setattr(store, "add", held_add)
    call = server.stub.SubmitTranscription(pb.SubmitTranscriptionRequest(content=spoken[WAV].path.read_bytes()))
    try:
        await asyncio.wait_for(adding.wait(), 60)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        release.set()
    listed: lro.ListOperationsResponse | None = None
    for _ in range(600):
        listed = await server.operations.ListOperations(lro.ListOperationsRequest())
        if listed.operations:
            break
        await asyncio.sleep(0.05)
    assert listed is not None
    assert len(listed.operations) == 1, "the job was not stored"
    done = await wait_done(server, listed.operations[0].name)
    response = pb.SubmitTranscriptionResponse()
    assert done.response.Unpack(response), done.error
    assert_has_words(response.transcript.text, spoken[WAV].expected_words)
    assert server.jobs.audio.names() == []

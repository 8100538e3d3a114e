"""Transcription jobs: the Job value read from a google.longrunning.Operation, list filters, and job futures."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import google.longrunning.operations_proto_pb2 as lro  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import duration_pb2

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.errors import JobCancelledError, TranscribeError, from_status

__all__ = [
    "MAX_PAGE_SIZE",
    "OPERATIONS_COLLECTION",
    "PROGRESS_INTERVAL_SECONDS",
    "WAIT_GRACE_SECONDS",
    "WAIT_SLICE_SECONDS",
    "AsyncJobCalls",
    "AsyncJobFuture",
    "Job",
    "JobCalls",
    "JobFuture",
    "JobProgressCallback",
    "JobState",
    "JobStateArg",
    "jobs_filter",
]

OPERATIONS_COLLECTION = "operations"
"""The collection ListOperations lists: every job's name is "operations/<32 hex digits>"."""
MAX_PAGE_SIZE = 1000
"""The largest page ListOperations returns; the server's default is 50."""
WAIT_SLICE_SECONDS = 30.0
"""The longest one WaitOperation call asks the server to wait (the server caps it at 60 s)."""
PROGRESS_INTERVAL_SECONDS = 1.0
"""With on_progress, each WaitOperation call waits at most this long, so progress is reported about every second."""
WAIT_GRACE_SECONDS = 10.0
"""A WaitOperation call's deadline is its wait plus this, so that the server's answer at the end of the wait arrives
before the deadline."""
_MIN_WAIT_SECONDS = 0.01
"""A wait shorter than this is a GetOperation: a zero WaitOperation timeout may mean the server's default."""


class JobState(enum.StrEnum):
    """Where a transcription job is in its life (transcribe.v1.JobState without its prefix)."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        """Whether a job in this state will never change again."""
        return self in _DONE_STATES

    @classmethod
    def parse(cls, value: JobStateArg) -> JobState:
        """A JobState from itself, a name in any case with or without "JOB_STATE_", or the proto enum value."""
        if isinstance(value, JobState):
            return value
        if isinstance(value, str):
            name = value.strip().upper().removeprefix("JOB_STATE_")
            try:
                return cls(name)
            except ValueError:
                choices = ", ".join(state.value.lower() for state in cls if state is not cls.UNSPECIFIED)
                raise ValueError(f"unknown job state {value!r}; expected one of {choices}") from None
        try:
            return cls(pb.JobState.Name(pb.JobState.ValueType(value)).removeprefix("JOB_STATE_"))
        except ValueError:
            return cls.UNSPECIFIED  # a state this client does not know yet


_DONE_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

JobStateArg = JobState | str | int
"""A job state as JobState, a name ("queued", "JOB_STATE_QUEUED") or a transcribe.v1.JobState value."""


@dataclass(frozen=True)
class Job:
    """A transcription job as the server last described it (an Operation and its TranscriptionJobMetadata).

    Times are timezone-aware (UTC) and None while unset. A done job holds either its transcript or its error:
    a TranscribeError with the code, message and ErrorInfo reason a direct Transcribe call would have failed with,
    or a JobCancelledError when it was cancelled.
    """

    name: str
    state: JobState
    done: bool
    progress_percent: int = 0
    create_time: datetime | None = None
    start_time: datetime | None = None
    update_time: datetime | None = None
    expire_time: datetime | None = None
    audio_duration: timedelta | None = None
    uri: str = ""
    """For audio from a URI, the URI without its query, fragment or user information."""
    attempt: int = 0
    worker: str = ""
    transcript: pb.Transcript | None = None
    error: TranscribeError | None = None
    operation: Any = field(default=None, repr=False, compare=False)
    """The google.longrunning.Operation this was read from."""

    @classmethod
    def from_operation(cls, operation: Any) -> Job:
        """Read a google.longrunning.Operation whose metadata is a TranscriptionJobMetadata."""
        metadata = pb.TranscriptionJobMetadata()
        if operation.HasField("metadata") and operation.metadata.Is(pb.TranscriptionJobMetadata.DESCRIPTOR):
            operation.metadata.Unpack(metadata)
        transcript: pb.Transcript | None = None
        error: TranscribeError | None = None
        result = operation.WhichOneof("result")
        if result == "response":
            response = pb.SubmitTranscriptionResponse()
            if operation.response.Is(pb.SubmitTranscriptionResponse.DESCRIPTOR):
                operation.response.Unpack(response)
            transcript = response.transcript
        elif result == "error":
            error = from_status(operation.error)
        state = JobState.parse(metadata.state)
        if state is JobState.UNSPECIFIED and operation.done:
            if isinstance(error, JobCancelledError):
                state = JobState.CANCELLED
            else:
                state = JobState.FAILED if error is not None else JobState.SUCCEEDED
        return cls(
            name=str(operation.name),
            state=state,
            done=bool(operation.done),
            progress_percent=int(metadata.progress_percent),
            create_time=_time(metadata, "create_time"),
            start_time=_time(metadata, "start_time"),
            update_time=_time(metadata, "update_time"),
            expire_time=_time(metadata, "expire_time"),
            audio_duration=metadata.audio_duration.ToTimedelta() if metadata.HasField("audio_duration") else None,
            uri=metadata.uri,
            attempt=int(metadata.attempt),
            worker=metadata.worker,
            transcript=transcript,
            error=error,
            operation=operation,
        )


def _time(metadata: pb.TranscriptionJobMetadata, name: Any) -> datetime | None:
    if not metadata.HasField(name):
        return None
    value: datetime = getattr(metadata, name).ToDatetime(tzinfo=UTC)
    return value


JobProgressCallback = Callable[[Job], None]
"""Called by wait_job with the job each time the server reports it, about every second, and once when it is done."""


def jobs_filter(state: JobStateArg | Iterable[JobStateArg] | None = None, done: bool | None = None) -> str | None:
    """The ListOperations filter for jobs in any of the states that are (not) done: "" lists every job, None
    means no job can match (a done state asked for with done=False)."""
    if state is None:
        return "" if done is None else f"done = {'true' if done else 'false'}"
    wanted = [state] if isinstance(state, JobState | str | int) else list(state)
    states = [JobState.parse(value) for value in wanted]
    if JobState.UNSPECIFIED in states:
        raise ValueError("jobs cannot be listed by the unspecified state")
    if done is not None:
        states = [value for value in states if value.done == done]
    if not states:
        return None
    return " OR ".join(f"state = {value.value}" for value in dict.fromkeys(states))


def settled(job: Job) -> Job:
    """The done job when it succeeded; its error (JobCancelledError when cancelled) is raised otherwise."""
    if job.error is not None:
        raise job.error.with_traceback(None)
    return job


class WaitBudget:
    """The time left to wait for a job, split into the waits of successive WaitOperation calls."""

    def __init__(
        self,
        timeout: float | None,
        *,
        slice_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be zero or more seconds")
        self._clock = clock
        self._slice = slice_seconds
        self._end = None if timeout is None else clock() + timeout
        self.timeout = timeout

    def next_wait(self) -> float:
        """How long the next call may wait: a slice, or what is left of the timeout."""
        if self._end is None:
            return self._slice
        return max(0.0, min(self._slice, self._end - self._clock()))

    def expired(self) -> bool:
        """Whether the timeout has passed."""
        return self._end is not None and self._clock() >= self._end

    def timeout_error(self, job: Job) -> TimeoutError:
        """The error to raise when the timeout passed before the job was done."""
        seconds = self.timeout or 0.0
        return TimeoutError(
            f"{job.name} is not done after {seconds:g} s ({job.state.value.lower()}, {job.progress_percent}%)"
        )


def wait_request(name: str, wait: float) -> tuple[Any, float] | None:
    """The WaitOperation request for a wait of `wait` seconds and the call's deadline; None for "just look"."""
    if wait < _MIN_WAIT_SECONDS:
        return None
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(round(wait * 1e9))
    return lro.WaitOperationRequest(name=name, timeout=timeout), wait + WAIT_GRACE_SECONDS


class JobCalls(Protocol):
    """What a JobFuture asks of its client (TranscribeClient)."""

    def get_job(self, name: str, *, timeout: float | None = None) -> Job:
        """The job as it is now."""
        ...

    def cancel_job(self, name: str, *, timeout: float | None = None) -> None:
        """Cancel the job."""
        ...

    def wait_job_done(
        self, name: str, *, timeout: float | None = None, on_progress: JobProgressCallback | None = None
    ) -> Job:
        """The job once it is done, whatever its outcome."""
        ...


class AsyncJobCalls(Protocol):
    """What an AsyncJobFuture asks of its client (AsyncTranscribeClient)."""

    async def get_job(self, name: str, *, timeout: float | None = None) -> Job:  # noqa: ASYNC109
        """The job as it is now."""
        ...

    async def cancel_job(self, name: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Cancel the job."""
        ...

    async def wait_job_done(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        on_progress: JobProgressCallback | None = None,
    ) -> Job:
        """The job once it is done, whatever its outcome."""
        ...


class JobFuture:
    """A submitted job as a future, in the manner of google.api_core's operation futures.

    done() and metadata() ask the server unless the job is already known to be done; result() waits for the
    transcript and raises the job's TranscribeError (JobCancelledError when cancelled), or TimeoutError.
    """

    def __init__(self, client: JobCalls, job: Job) -> None:
        self._client = client
        self._job = job

    @property
    def name(self) -> str:
        """The job's operation name, "operations/..."."""
        return self._job.name

    @property
    def job(self) -> Job:
        """The job as last seen, without asking the server."""
        return self._job

    def metadata(self) -> Job:
        """The job as the server describes it now (no call once it is done)."""
        if not self._job.done:
            self._job = self._client.get_job(self.name)
        return self._job

    def done(self) -> bool:
        """Whether the job has finished: succeeded, failed or cancelled."""
        return self.metadata().done

    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self.metadata().state is JobState.CANCELLED

    def result(self, timeout: float | None = None) -> pb.Transcript:
        """The transcript, waiting up to timeout seconds (None: until done) for the job to finish."""
        job = settled(self._wait(timeout))
        return job.transcript if job.transcript is not None else pb.Transcript()

    def exception(self, timeout: float | None = None) -> TranscribeError | None:
        """The job's error (None when it succeeded), waiting up to timeout seconds for the job to finish."""
        return self._wait(timeout).error

    def cancel(self) -> bool:
        """Ask the server to cancel the job; False when it is known to be done already."""
        if self.metadata().done:
            return False
        self._client.cancel_job(self.name)
        return True

    def _wait(self, timeout: float | None) -> Job:
        if not self._job.done:
            self._job = self._client.wait_job_done(self.name, timeout=timeout)
        return self._job

    def __repr__(self) -> str:
        return f"JobFuture(name={self.name!r}, state={self._job.state.value})"


class AsyncJobFuture:
    """A submitted job as an asyncio future-like object: as JobFuture, with coroutine methods."""

    def __init__(self, client: AsyncJobCalls, job: Job) -> None:
        self._client = client
        self._job = job

    @property
    def name(self) -> str:
        """The job's operation name, "operations/..."."""
        return self._job.name

    @property
    def job(self) -> Job:
        """The job as last seen, without asking the server."""
        return self._job

    async def metadata(self) -> Job:
        """The job as the server describes it now (no call once it is done)."""
        if not self._job.done:
            self._job = await self._client.get_job(self.name)
        return self._job

    async def done(self) -> bool:
        """Whether the job has finished: succeeded, failed or cancelled."""
        return (await self.metadata()).done

    async def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return (await self.metadata()).state is JobState.CANCELLED

    async def result(self, timeout: float | None = None) -> pb.Transcript:  # noqa: ASYNC109 - a wait, as in futures
        """The transcript, waiting up to timeout seconds (None: until done) for the job to finish."""
        job = settled(await self._wait(timeout))
        return job.transcript if job.transcript is not None else pb.Transcript()

    async def exception(self, timeout: float | None = None) -> TranscribeError | None:  # noqa: ASYNC109
        """The job's error (None when it succeeded), waiting up to timeout seconds for the job to finish."""
        return (await self._wait(timeout)).error

    async def cancel(self) -> bool:
        """Ask the server to cancel the job; False when it is known to be done already."""
        if (await self.metadata()).done:
            return False
        await self._client.cancel_job(self.name)
        return True

    async def _wait(self, timeout: float | None) -> Job:  # noqa: ASYNC109
        if not self._job.done:
            self._job = await self._client.wait_job_done(self.name, timeout=timeout)
        return self._job

    def __repr__(self) -> str:
        return f"AsyncJobFuture(name={self.name!r}, state={self._job.state.value})"

"""Jobs as plain values: a job's record, its state machine as pure transitions, and its record codec."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from service import errors
from service.domain import BackendKind, RawPcmFormat, Segment, Task, Transcript, TranscriptionOptions, Word


class JobState(enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        """Whether the job will never change again (but for deletion)."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


INTERNAL_KIND = "internal"
"""The failure kind of an error that is not a domain error: its details stay in the log of the worker."""


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed, enough to rebuild the domain error a direct call would have raised."""

    kind: str
    """The domain error's class name, or INTERNAL_KIND."""
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, error: BaseException) -> JobFailure:
        """The failure a job records for an error (a non-domain error records nothing of itself)."""
        if isinstance(error, errors.TranscribeError):
            return cls(type(error).__name__, error.message, dict(error.metadata))
        return cls(INTERNAL_KIND, "")

    def error(self) -> errors.TranscribeError | None:
        """The domain error again, or None for an internal failure."""
        cls = _ERROR_CLASSES.get(self.kind)
        return None if cls is None else cls(self.message, metadata=self.metadata)


def _error_classes(base: type[errors.TranscribeError]) -> dict[str, type[errors.TranscribeError]]:
    found = {base.__name__: base}
    for sub in base.__subclasses__():
        found |= _error_classes(sub)
    return found


_ERROR_CLASSES = _error_classes(errors.TranscribeError)

CANCELLED = JobFailure(errors.JobCancelled.__name__, "the job was cancelled")


@dataclass(frozen=True)
class Job:
    """One transcription job's record; every change is a transition below, applied atomically by a store."""

    id: str
    state: JobState
    options: TranscriptionOptions
    create_time: float
    update_time: float
    audio: str | None = None
    """The file name of the job's audio in the jobs audio folder, or None for audio from a URI."""
    uri: str | None = None
    """The URI to fetch, with any credentials in it: never shown, never logged."""
    shown_uri: str = ""
    """The URI without user information, query or fragment."""
    start_time: float | None = None
    expire_time: float | None = None
    progress: float = 0.0
    """From 0 to 1."""
    duration: float | None = None
    attempt: int = 0
    worker: str = ""
    lease_until: float | None = None
    cancel_requested: bool = False
    transcript: Transcript | None = None
    failure: JobFailure | None = None


def claim(job: Job, *, worker: str, now: float, lease_seconds: float, retention_seconds: float) -> Job | None:
    """Start (or take over) a job: a queued job, or a running one whose worker's lease ran out.

    A queued job whose cancellation was asked ends cancelled instead. None: someone else holds it, or it is done.
    """
    if job.state is JobState.QUEUED and job.cancel_requested:
        return cancelled(job, now=now, retention_seconds=retention_seconds)
    running_elsewhere = job.state is JobState.RUNNING and (job.lease_until or 0.0) > now
    if job.state.done or running_elsewhere:
        return None
    return replace(
        job,
        state=JobState.RUNNING,
        attempt=job.attempt + 1,
        worker=worker,
        start_time=now,
        update_time=now,
        lease_until=now + lease_seconds,
        progress=0.0,
    )


def renew(job: Job, *, worker: str, now: float, lease_seconds: float, progress: float, duration: float | None) -> Job:
    """Extend the worker's lease and record its progress; unchanged when the worker no longer holds the job."""
    if not holds(job, worker):
        return job
    return replace(
        job,
        lease_until=now + lease_seconds,
        update_time=now,
        progress=max(job.progress, min(progress, 1.0)),
        duration=duration if duration is not None else job.duration,
    )


def holds(job: Job, worker: str) -> bool:
    """Whether `worker` is running this attempt of the job."""
    return job.state is JobState.RUNNING and job.worker == worker


def succeeded(job: Job, transcript: Transcript, *, now: float, retention_seconds: float) -> Job:
    """The job is done with a transcript."""
    return replace(
        _done(job, JobState.SUCCEEDED, now, retention_seconds), transcript=transcript, duration=transcript.duration
    )


def failed(job: Job, failure: JobFailure, *, now: float, retention_seconds: float) -> Job:
    """The job is done with a failure."""
    return replace(_done(job, JobState.FAILED, now, retention_seconds), failure=failure)


def cancelled(job: Job, *, now: float, retention_seconds: float = 0.0) -> Job:
    """The job is done, cancelled before it finished; kept `retention_seconds` like any finished job."""
    return replace(_done(job, JobState.CANCELLED, now, retention_seconds), failure=CANCELLED)


def request_cancel(job: Job, *, now: float, retention_seconds: float) -> Job:
    """Ask for cancellation: a queued job ends at once, a running one when its worker next looks."""
    if job.state.done:
        return job
    if job.state is JobState.QUEUED:
        return cancelled(job, now=now, retention_seconds=retention_seconds)
    return replace(job, cancel_requested=True, update_time=now)


def requeue(job: Job, *, now: float, retention_seconds: float) -> Job | None:
    """Put a running job whose worker was lost back in the queue (or end it, when its cancellation was asked);
    None when it is not such a job."""
    if job.state is not JobState.RUNNING or (job.lease_until or 0.0) > now:
        return None
    if job.cancel_requested:
        return cancelled(job, now=now, retention_seconds=retention_seconds)
    return replace(job, state=JobState.QUEUED, lease_until=None, update_time=now)


def _done(job: Job, state: JobState, now: float, retention_seconds: float) -> Job:
    progress = 1.0 if state is JobState.SUCCEEDED else job.progress
    return replace(
        job, state=state, update_time=now, expire_time=now + retention_seconds, lease_until=None, progress=progress
    )


def encode(job: Job) -> str:
    """The job as one JSON document."""
    body = asdict(job)
    body["state"] = job.state.value
    body["options"] = _encode_options(job.options)
    if job.transcript is not None:
        body["transcript"]["backend"] = job.transcript.backend.value
    return json.dumps(body, separators=(",", ":"))


def decode(text: str | bytes) -> Job:
    """The job a JSON document from encode() describes."""
    body: dict[str, Any] = json.loads(text)
    transcript = body.pop("transcript")
    failure = body.pop("failure")
    return Job(
        **body
        | {
            "state": JobState(body["state"]),
            "options": _decode_options(body["options"]),
            "transcript": None if transcript is None else _decode_transcript(transcript),
            "failure": None if failure is None else JobFailure(**failure),
        }
    )


def _encode_options(options: TranscriptionOptions) -> dict[str, Any]:
    body = asdict(options)
    body["backend"] = None if options.backend is None else options.backend.value
    body["task"] = options.task.value
    return body


def _decode_options(body: dict[str, Any]) -> TranscriptionOptions:
    raw = body["raw_pcm"]
    return TranscriptionOptions(
        **body
        | {
            "backend": None if body["backend"] is None else BackendKind(body["backend"]),
            "task": Task(body["task"]),
            "raw_pcm": None if raw is None else RawPcmFormat(**raw),
        }
    )


def _decode_transcript(body: dict[str, Any]) -> Transcript:
    segments = tuple(Segment(**s | {"words": tuple(Word(**w) for w in s["words"])}) for s in body.pop("segments"))
    return Transcript(**body | {"backend": BackendKind(body["backend"]), "segments": segments})

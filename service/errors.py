"""Domain errors: each has a stable reason and a message that is safe to show a caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field and what is wrong with it."""

    field: str
    description: str


class TranscribeError(Exception):
    """Base of every error a caller may see; the transport maps each subclass to a status code."""

    reason = "TRANSCRIBE_ERROR"

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = tuple(violations)
        self.retry_after_seconds = retry_after_seconds

    def within(self, parent: str) -> Self:
        """This error with its fields named inside the `parent` message (config.model in live_config)."""
        self.violations = tuple(FieldViolation(f"{parent}.{v.field}", v.description) for v in self.violations)
        return self


class InvalidConfig(TranscribeError):
    """A config field has a value the server cannot use."""

    reason = "INVALID_CONFIG"


class StreamOutOfOrder(TranscribeError):
    """A stream's config is missing, repeated, or sent after audio."""

    reason = "STREAM_OUT_OF_ORDER"


class EmptyAudio(TranscribeError):
    """The request carries no audio bytes."""

    reason = "AUDIO_EMPTY"


class UndecodableAudio(TranscribeError):
    """The bytes are not audio any decoder understands, or hold no audio stream."""

    reason = "AUDIO_UNDECODABLE"


class TruncatedAudio(TranscribeError):
    """The file ends before the data its header declares."""

    reason = "AUDIO_TRUNCATED"


class AudioTooLarge(TranscribeError):
    """The upload is larger than the byte limit."""

    reason = "AUDIO_TOO_LARGE"


class AudioTooLong(TranscribeError):
    """The audio lasts longer than the duration limit."""

    reason = "AUDIO_TOO_LONG"


class ModelNotFound(TranscribeError):
    """The requested model is not one the backend can serve."""

    reason = "MODEL_NOT_FOUND"


class BackendNotConfigured(TranscribeError):
    """The requested backend lacks configuration, such as an API key."""

    reason = "BACKEND_NOT_CONFIGURED"


class BackendNotReady(TranscribeError):
    """The backend is still starting or is shutting down."""

    reason = "BACKEND_NOT_READY"


class UpstreamRateLimited(TranscribeError):
    """The upstream API refused the call for rate or quota."""

    reason = "UPSTREAM_RATE_LIMITED"


class UpstreamUnavailable(TranscribeError):
    """The upstream API failed or could not be reached after retries."""

    reason = "UPSTREAM_UNAVAILABLE"


class UpstreamTimeout(TranscribeError):
    """The upstream API did not answer in time."""

    reason = "UPSTREAM_TIMEOUT"


class UpstreamRejectedAudio(TranscribeError):
    """The upstream API refused the audio or the options as invalid."""

    reason = "UPSTREAM_REJECTED_REQUEST"


class UpstreamAuthFailed(TranscribeError):
    """The upstream API refused the server's credentials."""

    reason = "UPSTREAM_AUTH_FAILED"


class Unauthenticated(TranscribeError):
    """The call carries no valid bearer token."""

    reason = "UNAUTHENTICATED"


class Overloaded(TranscribeError):
    """Every worker and queue slot of the backend is taken."""

    reason = "OVERLOADED"


class StreamIdle(TranscribeError):
    """A stream sent nothing for longer than the idle timeout."""

    reason = "STREAM_IDLE_TIMEOUT"


class DeadlineTooShort(TranscribeError):
    """The caller's deadline passed before the work could start."""

    reason = "DEADLINE_TOO_SHORT"


class SpeechStartTimeout(TranscribeError):
    """A live stream carried no speech within its speech start timeout."""

    reason = "SPEECH_START_TIMEOUT"


class LiveSessionTooLong(TranscribeError):
    """A live stream lasted longer than the server allows one session."""

    reason = "LIVE_SESSION_TOO_LONG"


class LiveNotSupported(TranscribeError):
    """The backend cannot do what the live config asks (interim results need a local engine)."""

    reason = "LIVE_NOT_SUPPORTED"


class JobNotFound(TranscribeError):
    """No job has the given name (it never existed, was deleted, or its retention time passed)."""

    reason = "JOB_NOT_FOUND"


class JobQueueFull(TranscribeError):
    """The job queue holds as many waiting jobs as the server allows."""

    reason = "JOB_QUEUE_FULL"


class JobCancelled(TranscribeError):
    """The job was cancelled before it finished."""

    reason = "JOB_CANCELLED"


class InvalidJobQuery(TranscribeError):
    """A job listing's filter, page size or page token is invalid."""

    reason = "INVALID_JOB_QUERY"


class InvalidUri(TranscribeError):
    """The audio URI is malformed, has no host, or uses a scheme other than http or https."""

    reason = "URI_INVALID"


class UriForbidden(TranscribeError):
    """The server does not fetch from the URI: its address, its port, or too many redirects (metadata.rule)."""

    reason = "URI_FORBIDDEN"


class UriNotFound(TranscribeError):
    """The URI's server answered that nothing is there (404 or 410)."""

    reason = "URI_NOT_FOUND"


class UriUnavailable(TranscribeError):
    """The URI's server could not be reached or did not deliver the recording."""

    reason = "URI_UNAVAILABLE"


class UriTimeout(TranscribeError):
    """Connecting to the URI's server, reading from it, or the whole fetch took too long."""

    reason = "URI_TIMEOUT"

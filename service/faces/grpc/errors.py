"""The one table from domain errors to gRPC status codes, and the AIP-193 status it sends."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service import errors

ERROR_DOMAIN = "transcribe.v1"

STATUS_CODES: dict[type[errors.TranscribeError], grpc.StatusCode] = {
    errors.InvalidConfig: grpc.StatusCode.INVALID_ARGUMENT,
    errors.StreamOutOfOrder: grpc.StatusCode.INVALID_ARGUMENT,
    errors.EmptyAudio: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UndecodableAudio: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TruncatedAudio: grpc.StatusCode.INVALID_ARGUMENT,
    errors.AudioTooLong: grpc.StatusCode.INVALID_ARGUMENT,
    errors.AudioTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.BackendNotConfigured: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UpstreamAuthFailed: grpc.StatusCode.FAILED_PRECONDITION,
    errors.BackendNotReady: grpc.StatusCode.UNAVAILABLE,
    errors.UpstreamRateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.StreamIdle: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.DeadlineTooShort: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UpstreamUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.UpstreamTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UpstreamRejectedAudio: grpc.StatusCode.INVALID_ARGUMENT,
    errors.SpeechStartTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.LiveSessionTooLong: grpc.StatusCode.OUT_OF_RANGE,
    errors.LiveNotSupported: grpc.StatusCode.FAILED_PRECONDITION,
    errors.JobNotFound: grpc.StatusCode.NOT_FOUND,
    errors.JobQueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.JobCancelled: grpc.StatusCode.CANCELLED,
    errors.InvalidJobQuery: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidUri: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UriForbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.UriNotFound: grpc.StatusCode.NOT_FOUND,
    errors.UriUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.UriTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
}

INTERNAL_MESSAGE = "internal error; the server logged the details"


def status_code(error: errors.TranscribeError) -> grpc.StatusCode:
    """The status code of a domain error (INTERNAL for one the table does not list)."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


def to_status(error: errors.TranscribeError) -> grpc.Status:
    """The grpc.Status carrying a google.rpc.Status with ErrorInfo, BadRequest and RetryInfo details."""
    status: grpc.Status = rpc_status.to_status(rich_status(error))
    return status


def rich_status(error: errors.TranscribeError) -> status_pb2.Status:
    """The google.rpc.Status of a domain error, with ErrorInfo, BadRequest and RetryInfo details."""
    code = status_code(error)
    details = status_pb2.Status(code=code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details.details.add().Pack(info)
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.details.add().Pack(bad_request)
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_after_seconds * 1e9))
        details.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return details


def internal_status() -> grpc.Status:
    """A generic INTERNAL status that reveals nothing about the failure."""
    status: grpc.Status = rpc_status.to_status(internal_rich_status())
    return status


def internal_rich_status() -> status_pb2.Status:
    """The google.rpc.Status of an unexpected failure, revealing nothing about it."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    details = status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    details.details.add().Pack(info)
    return details

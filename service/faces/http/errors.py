"""The one table from domain errors to HTTP statuses, and the OpenAI-shaped error body it sends."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from service import errors


class NotMultipart(errors.TranscribeError):
    """The request body is not multipart/form-data, the only body the audio routes take."""

    reason = "UNSUPPORTED_MEDIA_TYPE"


STATUSES: dict[type[errors.TranscribeError], tuple[int, str | None]] = {
    # error: (HTTP status, the form field OpenAI's `param` names when no field violation says which)
    errors.InvalidConfig: (400, None),
    errors.StreamOutOfOrder: (400, None),
    errors.EmptyAudio: (400, "file"),
    errors.UndecodableAudio: (400, "file"),
    errors.TruncatedAudio: (400, "file"),
    errors.AudioTooLong: (400, "file"),
    errors.UpstreamRejectedAudio: (400, None),
    errors.LiveSessionTooLong: (400, None),
    errors.LiveNotSupported: (400, None),
    errors.BackendNotConfigured: (400, "model"),
    errors.InvalidUri: (400, None),
    errors.Unauthenticated: (401, None),
    errors.UriForbidden: (403, None),
    errors.ModelNotFound: (404, "model"),
    errors.UriNotFound: (404, None),
    errors.StreamIdle: (408, "file"),
    errors.SpeechStartTimeout: (408, None),
    errors.AudioTooLarge: (413, "file"),
    NotMultipart: (415, None),
    errors.Overloaded: (429, None),
    errors.UpstreamRateLimited: (429, None),
    errors.UpstreamAuthFailed: (502, None),
    errors.UriUnavailable: (502, None),
    errors.BackendNotReady: (503, None),
    errors.UpstreamUnavailable: (503, None),
    errors.DeadlineTooShort: (504, None),
    errors.UpstreamTimeout: (504, None),
    # Jobs are a gRPC face's; these complete the table.
    errors.InvalidJobQuery: (400, None),
    errors.JobNotFound: (404, None),
    errors.JobCancelled: (409, None),
    errors.JobQueueFull: (429, None),
    errors.UriTimeout: (504, None),
}

INTERNAL_MESSAGE = "internal error; the server logged the details"
INTERNAL_CLOSE_CODE = 1011
"""RFC 6455's close code for an unexpected condition; other errors close with 4000 + their HTTP status."""

# Field violations name the gRPC config's fields; OpenAI's `param` names the form's.
_FORM_FIELDS = {
    "config.model": "model",
    "config.task": "model",
    "config.language_code": "language",
    "config.prompt": "prompt",
    "config.temperature": "temperature",
}


def status_of(error: errors.TranscribeError) -> tuple[int, str | None]:
    """The HTTP status and default `param` of a domain error (500 for one the table does not list)."""
    for cls in type(error).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return 500, None


def error_type(status: int) -> str:
    """OpenAI's error `type` for a status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def domain_error_body(error: errors.TranscribeError, *, audio_param: str | None = "file") -> tuple[int, dict[str, Any]]:
    """The status of a domain error and OpenAI's body for it (code = the reason, lower case); `param` names the audio
    as `audio_param` (the form's `file`; None on the live WebSocket, whose audio is its binary messages)."""
    status, param = status_of(error)
    if param == "file":
        param = audio_param
    if error.violations:
        # Field violations name the gRPC messages' fields; `param` names the form's or the live config's.
        field = error.violations[0].field.removeprefix("live_config.")
        param = _FORM_FIELDS.get(field, field)
    return status, error_body(status, error.message, param=param, code=error.reason.lower())


def error_response(error: errors.TranscribeError) -> JSONResponse:
    """The response for a domain error: its status, OpenAI's body, Retry-After."""
    status, body = domain_error_body(error)
    headers = {}
    if error.retry_after_seconds is not None:
        headers["retry-after"] = str(math.ceil(error.retry_after_seconds))
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def close_code(status: int) -> int:
    """The WebSocket close code that ends a live session with an error: 4000 + its HTTP status, or 1011 (internal)."""
    return INTERNAL_CLOSE_CODE if status == 500 else 4000 + status


def internal_response() -> JSONResponse:
    """A generic 500 that reveals nothing about the failure."""
    return JSONResponse(error_body(500, INTERNAL_MESSAGE, code="internal"), status_code=500)
